package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const testAccount = "0123456789abcdef0123456789abcdef"

// required holds the keys without defaults.
func required() map[string]any {
	return map[string]any{KeyAccountID: testAccount, KeyBucket: "backups"}
}

func parse(ctx map[string]any) (Config, error) {
	return ParseConfig(func(k string) any { return ctx[k] })
}

func TestParseConfigDefaults(t *testing.T) {
	got, err := parse(required())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		AccountID:           testAccount,
		Databases:           "*",
		Schedule:            "cron(0 3 * * ? *)",
		Bucket:              "backups",
		Compression:         "gzip",
		PollIntervalSeconds: 5,
		ExportTimeout:       time.Hour,
		MaxRestarts:         2,
		Concurrency:         4,
		PartSizeMiB:         16,
		AssetDir:            "build/lambda",
		VerifyMaxMiB:        1024,
		StaleAfterHours:     36,
	}
	if got != want {
		t.Errorf("ParseConfig() =\n%+v, want\n%+v", got, want)
	}
}

func TestParseConfigValues(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		value any
		field string
		want  any
	}{
		{"number from cdk.json", KeyConcurrency, float64(7), "Concurrency", 7},
		{"number from -c", KeyConcurrency, "7", "Concurrency", 7},
		{"list from cdk.json", KeyDatabases, []any{"a", " b"}, "Databases", "a,b"},
		{"list from -c", KeyInclude, "prod-*, staging-*", "Include", "prod-*,staging-*"},
		{"empty means default", KeyCompression, "", "Compression", "gzip"},
		{"rate", KeySchedule, "rate(1 day)", "Schedule", "rate(1 day)"},
		{"rate plural", KeySchedule, "rate(12 hours)", "Schedule", "rate(12 hours)"},
		{"duration", KeyExportTimeout, "45m", "ExportTimeout", 45 * time.Minute},
		{"longer export, fewer restarts", KeyExportTimeout, "3h", "ExportTimeout", time.Hour},
		{"endpoint", KeyR2Endpoint, "https://r2.example.com", "R2Endpoint", "https://r2.example.com"},
		{"email", KeyAlarmEmail, "ops@example.com", "AlarmEmail", "ops@example.com"},
		{"retention", KeyKeepDaily, "7", "KeepDaily", 7},
		{"time zone", KeyTimeZone, "Europe/Berlin", "TimeZone", "Europe/Berlin"},
		{"verification off", KeyVerifyMaxMiB, "0", "VerifyMaxMiB", 0},
		{"age recipient", KeyAgeRecipients, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "AgeRecipients", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"},
		{"partial secret ARN", KeySecretARN, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup", "SecretARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := required()
			ctx[tt.key] = tt.value
			if tt.name == "longer export, fewer restarts" {
				ctx[KeyMaxRestarts] = 0
				tt.want = 3 * time.Hour
			}
			cfg, err := parse(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := reflect.ValueOf(cfg).FieldByName(tt.field).Interface(); got != tt.want {
				t.Errorf("%s = %v, want %v", tt.field, got, tt.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]any // merged over required(); nil values delete
		want string
	}{
		{"nothing set", map[string]any{KeyAccountID: nil, KeyBucket: nil},
			`context "cloudflareAccountId": is required: the Cloudflare account ID (32 hex digits, in the dashboard's URL)` + "\n" +
				`context "bucket": is required: the R2 bucket the backups go to`},
		{"account", map[string]any{KeyAccountID: "ABC"}, `context "cloudflareAccountId": must be 32 lower-case hex digits, got "ABC"`},
		{"compression", map[string]any{KeyCompression: "lz4"}, `context "compression": must be gzip, zstd or none, got "lz4"`},
		{"age recipient", map[string]any{KeyAgeRecipients: "age1nope"}, `context "ageRecipients": must be age public keys (age1..., from age-keygen), comma-separated, got "age1nope"`},
		{"time zone", map[string]any{KeyTimeZone: "Mars/Base"}, `context "timezone": must be an IANA time zone such as Europe/Berlin, got "Mars/Base"`},
		{"retention", map[string]any{KeyKeepLast: "-1"}, `context "keepLast": must be from 0 to 10000, got -1`},
		{"compression type", map[string]any{KeyCompression: true}, `context "compression": must be a string, got true`},
		{"schedule", map[string]any{KeySchedule: "daily"}, `context "schedule": must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC), got "daily"`},
		{"rate singular", map[string]any{KeySchedule: "rate(1 days)"}, `context "schedule": must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC), got "rate(1 days)"`},
		{"cron five fields", map[string]any{KeySchedule: "cron(0 3 * * ?)"}, `context "schedule": must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC), got "cron(0 3 * * ?)"`},
		{"bucket", map[string]any{KeyBucket: "My_Bucket"}, `context "bucket": must be an R2 bucket name (3-63 lower-case letters, digits and hyphens), got "My_Bucket"`},
		{"prefix", map[string]any{KeyPrefix: "/d1"}, `context "prefix": must not start with /, got "/d1"`},
		{"poll range", map[string]any{KeyPollInterval: float64(0)}, `context "pollIntervalSeconds": must be from 1 to 300, got 0`},
		{"poll text", map[string]any{KeyPollInterval: "5s"}, `context "pollIntervalSeconds": must be a whole number from 1 to 300, got "5s"`},
		{"poll fraction", map[string]any{KeyPollInterval: 2.5}, `context "pollIntervalSeconds": must be a whole number from 1 to 300, got 2.5`},
		{"concurrency", map[string]any{KeyConcurrency: "41"}, `context "concurrency": must be from 1 to 40, got 41`},
		{"part size", map[string]any{KeyPartSize: float64(4)}, `context "partSizeMiB": must be from 5 to 512, got 4`},
		{"restarts", map[string]any{KeyMaxRestarts: float64(6)}, `context "maxRestarts": must be from 0 to 5, got 6`},
		{"export timeout", map[string]any{KeyExportTimeout: "forever"}, `context "exportTimeout": must be a duration from 1m to 3h such as 45m or 1h, got "forever"`},
		{"export budget", map[string]any{KeyExportTimeout: "2h"},
			`context "exportTimeout": 2h × (maxRestarts 2 + 1) = 6h exceeds the 3h30m that the per-database workflow's 4h timeout leaves after 30m for storing the dump; lower exportTimeout or maxRestarts`},
		{"databases", map[string]any{KeyDatabases: "a,*"}, `context "databases": must be * alone or a list of names/UUIDs, got "a,*"`},
		{"databases list type", map[string]any{KeyDatabases: []any{"a", float64(1)}}, `context "databases": must be a list of strings, got ["a",1]`},
		{"include", map[string]any{KeyInclude: "ok-*,[a"}, `context "include": must be comma-separated glob patterns (*, ?, [a-z]), got "[a"`},
		{"endpoint", map[string]any{KeyR2Endpoint: "http://r2.example.com"}, `context "r2Endpoint": must be an https:// URL (or empty for the account's R2 endpoint), got "http://r2.example.com"`},
		{"email", map[string]any{KeyAlarmEmail: "ops"}, `context "alarmEmail": must be an e-mail address, got "ops"`},
		{"secret", map[string]any{KeySecretARN: "arn:aws:s3:::bucket"}, `context "secretArn": must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>), got "arn:aws:s3:::bucket"`},
		{"several", map[string]any{KeyCompression: "lz4", KeyConcurrency: float64(0)},
			`context "concurrency": must be from 1 to 40, got 0` + "\n" + `context "compression": must be gzip, zstd or none, got "lz4"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := required()
			for k, v := range tt.set {
				if v == nil {
					delete(ctx, k)
				} else {
					ctx[k] = v
				}
			}
			cfg, err := parse(ctx)
			if err == nil {
				t.Fatalf("ParseConfig() = %+v, want error %q", cfg, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("ParseConfig() error =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestKeysAreAllRead(t *testing.T) {
	read := map[string]bool{}
	if _, err := ParseConfig(func(k string) any { read[k] = true; return required()[k] }); err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys {
		if !read[k] {
			t.Errorf("key %s listed in Keys but never read", k)
		}
		delete(read, k)
	}
	for k := range read {
		t.Errorf("key %s read but missing from Keys", k)
	}
	if strings.Join(Keys, ",") == "" {
		t.Fatal("no keys")
	}
}
