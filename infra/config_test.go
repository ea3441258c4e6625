package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/config"
)

const testAccount = "0123456789abcdef0123456789abcdef"

// required holds the keys without defaults.
func required() map[string]any {
	return map[string]any{"cloudflareAccountId": testAccount, "bucket": "backups"}
}

func parse(ctx map[string]any) (config.Config, error) {
	return ParseConfig(func(k string) any { return ctx[k] })
}

func TestParseConfigDefaults(t *testing.T) {
	got, err := parse(required())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		got  any
		want any
	}{
		{"account", got.AccountID, testAccount},
		{"bucket", got.R2Bucket, "backups"},
		{"databases", fmt.Sprint(got.Databases), "[*]"},
		{"schedule", got.Schedule, "cron(0 3 * * ? *)"},
		{"compression", got.Compression, "gzip"},
		{"poll", got.PollInterval, 5 * time.Second},
		{"export timeout", got.ExportTimeout, time.Hour},
		{"restarts", got.MaxRestarts, 2},
		{"concurrency", got.Concurrency, 4},
		{"part size", got.PartSize, int64(16 << 20)},
		{"asset dir", got.AssetDir, "build/lambda"},
		{"verify max", got.VerifyMaxBytes, int64(1 << 30)},
		{"stale after", got.StaleAfterHours, 36},
		{"poll cap", got.PollIntervalMax, time.Minute},
		{"API budget", got.APIRequestBudget, 600},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseConfigValues(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		value any
		get   func(config.Config) any
		want  any
	}{
		{"number from cdk.json", "concurrency", float64(6), func(c config.Config) any { return c.Concurrency }, 6},
		{"number from -c", "concurrency", "6", func(c config.Config) any { return c.Concurrency }, 6},
		{"list from cdk.json", "databases", []any{"a", " b"}, func(c config.Config) any { return fmt.Sprint(c.Databases) }, "[a b]"},
		{"list from -c", "include", "prod-*, staging-*", func(c config.Config) any { return fmt.Sprint(c.Include) }, "[prod-* staging-*]"},
		{"empty means default", "compression", "", func(c config.Config) any { return c.Compression }, "gzip"},
		{"rate", "schedule", "rate(1 day)", func(c config.Config) any { return c.Schedule }, "rate(1 day)"},
		{"rate plural", "schedule", "rate(12 hours)", func(c config.Config) any { return c.Schedule }, "rate(12 hours)"},
		{"cron with day of week", "schedule", "cron(0 3 ? * MON-FRI *)", func(c config.Config) any { return c.Schedule }, "cron(0 3 ? * MON-FRI *)"},
		{"duration", "exportTimeout", "45m", func(c config.Config) any { return c.ExportTimeout }, 45 * time.Minute},
		{"part size in MiB", "partSizeMiB", float64(64), func(c config.Config) any { return c.PartSize }, int64(64 << 20)},
		{"endpoint", "r2Endpoint", "https://r2.example.com", func(c config.Config) any { return c.R2Endpoint }, "https://r2.example.com"},
		{"email", "alarmEmail", "ops@example.com", func(c config.Config) any { return c.AlarmEmail }, "ops@example.com"},
		{"retention", "keepDaily", "7", func(c config.Config) any { return c.Retention.KeepDaily }, 7},
		{"time zone", "timezone", "Europe/Berlin", func(c config.Config) any { return c.Retention.Location.String() }, "Europe/Berlin"},
		{"verification off", "verifyMaxMiB", "0", func(c config.Config) any { return c.VerifyMaxBytes }, int64(0)},
		{"age recipient", "ageRecipients", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", func(c config.Config) any { return fmt.Sprint(c.Recipients) }, "[age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]"},
		{"partial secret ARN", "cloudflareSecretArn", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup", func(c config.Config) any { return c.CloudflareSecretARN }, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup"},
		{"poll cap", "pollIntervalMaxSeconds", float64(30), func(c config.Config) any { return c.PollIntervalMax }, 30 * time.Second},
		{"API budget", "apiRequestBudget", "1200", func(c config.Config) any { return c.APIRequestBudget }, 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := required()
			ctx[tt.key] = tt.value
			cfg, err := parse(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(cfg); got != tt.want {
				t.Errorf("%s = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
	// Many databases at once are allowed when they poll slowly enough.
	ctx := required()
	ctx["concurrency"], ctx["pollIntervalSeconds"], ctx["apiRequestBudget"] = float64(40), float64(20), float64(1200)
	if _, err := parse(ctx); err != nil {
		t.Errorf("40 at once polling every 20 s within 1200: %v", err)
	}
	// A longer export is allowed when fewer restarts leave room for it.
	ctx = required()
	ctx["exportTimeout"], ctx["maxRestarts"] = "3h", float64(0)
	if cfg, err := parse(ctx); err != nil || cfg.ExportTimeout != 3*time.Hour {
		t.Errorf("3h export with no restarts: %v, %v", cfg.ExportTimeout, err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]any // merged over required(); nil values delete
		want string
	}{
		{"nothing set", map[string]any{"cloudflareAccountId": nil, "bucket": nil},
			`context "cloudflareAccountId": is required: the Cloudflare account ID (32 hex digits, in the dashboard's URL)` + "\n" +
				`context "bucket": is required: the R2 bucket the backups go to`},
		{"account", map[string]any{"cloudflareAccountId": "ABC"}, `context "cloudflareAccountId": must be 32 lower-case hex digits (the account ID in the dashboard's URL), got "ABC"`},
		{"compression", map[string]any{"compression": "lz4"}, `context "compression": must be one of gzip, zstd, none, got "lz4"`},
		{"age recipient", map[string]any{"ageRecipients": "age1nope"}, `context "ageRecipients": "age1nope" is not an age public key (age1..., from age-keygen), got "age1nope"`},
		{"time zone", map[string]any{"timezone": "Mars/Base"}, `context "timezone": must be an IANA time zone name such as Europe/Berlin, got "Mars/Base"`},
		{"retention", map[string]any{"keepLast": "-1"}, `context "keepLast": must be a whole number from 0 to 10000, got "-1"`},
		{"compression type", map[string]any{"compression": map[string]any{}}, `context "compression": must be a string or a number, got map[]`},
		{"schedule", map[string]any{"schedule": "daily"}, `context "schedule": must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC), got "daily"`},
		{"rate singular", map[string]any{"schedule": "rate(1 days)"}, `context "schedule": must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC), got "rate(1 days)"`},
		{"cron five fields", map[string]any{"schedule": "cron(0 3 * * ?)"}, `context "schedule": must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC), got "cron(0 3 * * ?)"`},
		{"cron both days", map[string]any{"schedule": "cron(0 3 * * * *)"}, `context "schedule": cron day-of-month (*) and day-of-week (*): exactly one must be ?, as EventBridge requires, got "cron(0 3 * * * *)"`},
		{"cron neither day", map[string]any{"schedule": "cron(0 3 ? * ? *)"}, `context "schedule": cron day-of-month (?) and day-of-week (?): exactly one must be ?, as EventBridge requires, got "cron(0 3 ? * ? *)"`},
		{"bucket", map[string]any{"bucket": "My_Bucket"}, `context "bucket": must be an R2 bucket name (3-63 lower-case letters, digits and hyphens), got "My_Bucket"`},
		{"prefix", map[string]any{"prefix": "/d1"}, `context "prefix": must not start with /, got "/d1"`},
		{"poll range", map[string]any{"pollIntervalSeconds": float64(0)}, `context "pollIntervalSeconds": must be a duration from 1s to 5m, such as 45m or 1h (a bare number is seconds), got 0`},
		{"poll text", map[string]any{"pollIntervalSeconds": "soon"}, `context "pollIntervalSeconds": must be a duration from 1s to 5m, such as 45m or 1h (a bare number is seconds), got "soon"`},
		{"concurrency", map[string]any{"concurrency": "41"}, `context "concurrency": must be a whole number from 1 to 40, got "41"`},
		{"part size", map[string]any{"partSizeMiB": float64(4)}, `context "partSizeMiB": must be a size from 5MiB to 512MiB, such as 16MiB, got 4`},
		{"restarts", map[string]any{"maxRestarts": float64(6)}, `context "maxRestarts": must be a whole number from 0 to 5, got 6`},
		{"export timeout", map[string]any{"exportTimeout": "forever"}, `context "exportTimeout": must be a duration from 1m to 3h, such as 45m or 1h (a bare number is seconds), got "forever"`},
		{"export budget", map[string]any{"exportTimeout": "2h"},
			`context "exportTimeout": 2h × (maxRestarts 2 + 1) = 6h exceeds the 3h30m that the per-database workflow's 4h timeout leaves after 30m for storing the dump; lower exportTimeout or maxRestarts`},
		{"databases", map[string]any{"databases": "a,*"}, `context "databases": must be * alone or a list of names/UUIDs, got "a,*"`},
		{"databases list type", map[string]any{"databases": []any{"a", float64(1)}}, `context "databases": must be a list of strings, got [a 1]`},
		{"include", map[string]any{"include": "ok-*,[a"}, `context "include": "[a" is not a glob pattern (*, ?, [a-z]), got "ok-*,[a"`},
		{"endpoint", map[string]any{"r2Endpoint": "http://r2.example.com"}, `context "r2Endpoint": must be an https:// URL (or empty for the account's R2 endpoint), got "http://r2.example.com"`},
		{"email", map[string]any{"alarmEmail": "ops"}, `context "alarmEmail": must be an e-mail address, got "ops"`},
		{"secret", map[string]any{"r2SecretArn": "arn:aws:s3:::bucket"}, `context "r2SecretArn": must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>), got "arn:aws:s3:::bucket"`},
		{"kms key", map[string]any{"secretsKmsKeyArn": "alias/mine"}, `context "secretsKmsKeyArn": must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), got "alias/mine"`},
		{"history budget", map[string]any{"pollIntervalSeconds": float64(1), "pollIntervalMaxSeconds": float64(1), "exportTimeout": "1h"},
			`context "pollIntervalMaxSeconds": with pollIntervalSeconds 1s, pollIntervalMaxSeconds 1s, exportTimeout 1h and maxRestarts 2 a database backup may record 98568 history events, over the 20000 this deployment allows (Step Functions fails an execution at 25000): raise the poll interval or its cap, or lower exportTimeout or maxRestarts` + "\n" +
				`context "concurrency": 4 databases at once polling every 1s may make 1250 Cloudflare API requests in 5 minutes, over apiRequestBudget 600 (Cloudflare allows 1200 for the whole account and then blocks every call for 5 minutes): lower concurrency or raise pollIntervalSeconds`},
		{"API budget", map[string]any{"concurrency": float64(10)},
			`context "concurrency": 10 databases at once polling every 5s may make 910 Cloudflare API requests in 5 minutes, over apiRequestBudget 600 (Cloudflare allows 1200 for the whole account and then blocks every call for 5 minutes): lower concurrency or raise pollIntervalSeconds`},
		{"too many listed databases", map[string]any{"databases": strings.Repeat("db,", 200) + "db"},
			`context "databases": lists 201 databases; each gets its own alarm, and a stack holds at most 200 of them: use * with include/exclude patterns`},
		{"stale window", map[string]any{"staleAfterHours": float64(169)}, `context "staleAfterHours": must be a whole number from 1 to 168, got 169`},
		{"several", map[string]any{"compression": "lz4", "concurrency": float64(0)},
			`context "compression": must be one of gzip, zstd, none, got "lz4"` + "\n" + `context "concurrency": must be a whole number from 1 to 40, got 0`},
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

func TestContextKeysAreAllRead(t *testing.T) {
	read := map[string]bool{}
	if _, err := ParseConfig(func(k string) any { read[k] = true; return required()[k] }); err != nil {
		t.Fatal(err)
	}
	keys := ContextKeys()
	for _, k := range keys {
		if !read[k] {
			t.Errorf("key %s listed in ContextKeys but never read", k)
		}
		delete(read, k)
	}
	for k := range read {
		t.Errorf("key %s read but missing from ContextKeys", k)
	}
	if !slices.Contains(keys, "partSizeMiB") {
		t.Fatalf("keys %v lack partSizeMiB", keys)
	}
}
