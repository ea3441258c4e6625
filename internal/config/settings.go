package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/codec"
)

// Setting is one row of the settings table: its names in every front door,
// its type, default, range and help. Env parsing (FromEnv), CDK context
// parsing (FromContext), CLI flags (BindFlags), the Lambda environment the
// stack writes (LambdaEnv) and the README's configuration table are all
// derived from these rows, so a setting is added, renamed or re-ranged in
// one place.
type Setting struct {
	// Name identifies the setting in messages and docs.
	Name string
	// Env is its environment variable, Context its CDK context key and Flag
	// its CLI flag (without dashes); "" where it has none.
	Env     string
	Context string
	Flag    string
	// Kind says how text becomes a value.
	Kind Kind
	// Default is the value when no source sets it, in the syntax of Env.
	Default string
	// Min and Max bound Int (a count), Duration (nanoseconds) and Bytes.
	Min, Max int64
	// ContextUnit is what a bare number in CDK context means for Bytes
	// (partSizeMiB is in MiB); 0 means bytes.
	ContextUnit int64
	// Secret settings are credentials: never printed, never in the stack's
	// template or the Lambda environment (they come from Secrets Manager).
	Secret bool
	// Lambda: the deployed functions read it (the stack writes it into
	// their environment unless Secret).
	Lambda bool
	// Help is one line for --help and the README.
	Help string
	// Check validates a parsed value beyond Kind and range.
	Check func(v any) error
	// Field points into a Config.
	Field func(c *Config) any
}

// Kind is how a setting's text is parsed.
type Kind int

// Kinds.
const (
	String Kind = iota
	// Int is a whole number within [Min, Max].
	Int
	// Duration is a Go duration ("90s", "1h") or a bare number of seconds.
	Duration
	// Bytes is a size ("16MiB", "1GiB", "5000000") within [Min, Max].
	Bytes
	// List is comma-separated in env and context; a flag is repeatable.
	List
	// Zone is an IANA time zone name.
	Zone
	// Bool is true or false (1/0, t/f); a flag alone means true.
	Bool
)

// Well-known setting names (Setting.Name), for callers that bind flags.
const (
	SettingCompression     = "compression"
	SettingAgeRecipients   = "age-recipient"
	SettingPollInterval    = "poll-interval"
	SettingExportTimeout   = "export-timeout"
	SettingMaxRestarts     = "max-restarts"
	SettingPartSize        = "part-size"
	SettingPartConcurrency = "part-concurrency"
	SettingConcurrency     = "concurrency"
	SettingDatabases       = "databases"
	SettingInclude         = "include"
	SettingExclude         = "exclude"
	SettingKeepLast        = "keep-last"
	SettingKeepDaily       = "keep-daily"
	SettingKeepWeekly      = "keep-weekly"
	SettingKeepMonthly     = "keep-monthly"
	SettingTimeZone        = "timezone"
	SettingVerifyMax       = "verify-max"
	SettingStateMachine    = "state-machine"
	SettingStaleAfter      = "stale-after-hours"
	SettingMethod          = "method"
	SettingR2Jurisdiction  = "r2-jurisdiction"
	SettingAllowCrossJuris = "allow-cross-jurisdiction"
)

const (
	kiB = 1 << 10
	miB = 1 << 20
	giB = 1 << 30
)

var (
	accountIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)
	bucketRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
)

// Settings returns the table, in the order the README lists it.
func Settings() []Setting { return table }

// Lookup returns the setting called name.
func Lookup(name string) (Setting, bool) {
	for _, s := range table {
		if s.Name == name {
			return s, true
		}
	}
	return Setting{}, false
}

var table = []Setting{
	{Name: "account-id", Env: EnvAccountID, Context: "cloudflareAccountId", Kind: String, Lambda: true,
		Help: "Cloudflare account owning the databases (32 hex digits)",
		Check: func(v any) error {
			if s := v.(string); s != "" && !accountIDRe.MatchString(s) {
				return fmt.Errorf("must be 32 lower-case hex digits (the account ID in the dashboard's URL)")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.AccountID }},
	{Name: "api-token", Env: EnvAPIToken, Kind: String, Secret: true,
		Help:  "API token with Account · D1 · Edit",
		Field: func(c *Config) any { return &c.APIToken }},
	{Name: "api-base-url", Env: EnvAPIBaseURL, Kind: String, Default: DefaultAPIBaseURL,
		Help: "Cloudflare API root (point it at the emulator)", Check: httpURL,
		Field: func(c *Config) any { return &c.APIBaseURL }},
	{Name: "bucket", Env: EnvR2Bucket, Context: "bucket", Kind: String, Lambda: true,
		Help: "R2 bucket; without it the CLI writes to ./" + DefaultLocalDir,
		Check: func(v any) error {
			if s := v.(string); s != "" && !bucketRe.MatchString(s) {
				return fmt.Errorf("must be an R2 bucket name (3-63 lower-case letters, digits and hyphens)")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.R2Bucket }},
	{Name: "r2-access-key-id", Env: EnvR2AccessKey, Kind: String, Secret: true,
		Help:  "R2 API token's S3 access key ID",
		Field: func(c *Config) any { return &c.R2AccessKeyID }},
	{Name: "r2-secret-access-key", Env: EnvR2Secret, Kind: String, Secret: true,
		Help:  "R2 API token's S3 secret access key",
		Field: func(c *Config) any { return &c.R2SecretAccessKey }},
	{Name: "r2-endpoint", Env: EnvR2Endpoint, Context: "r2Endpoint", Kind: String, Lambda: true,
		Help: "S3 endpoint (default https://<account>.r2.cloudflarestorage.com)", Check: httpURL,
		Field: func(c *Config) any { return &c.R2Endpoint }},
	{Name: "prefix", Env: EnvPrefix, Context: "prefix", Kind: String, Lambda: true,
		Help: "key prefix inside the bucket",
		Check: func(v any) error {
			if strings.HasPrefix(v.(string), "/") {
				return fmt.Errorf("must not start with /")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.Prefix }},
	{Name: SettingCompression, Env: EnvCompression, Context: "compression", Flag: SettingCompression, Kind: String, Lambda: true,
		Default: codec.Default,
		Help:    "compression `codec` of stored dumps: " + strings.Join(codec.Names(), ", "),
		Check: func(v any) error {
			if _, err := codec.Lookup(v.(string)); err != nil {
				return fmt.Errorf("must be one of %s", strings.Join(codec.Names(), ", "))
			}
			return nil
		},
		Field: func(c *Config) any { return &c.Compression }},
	{Name: SettingAgeRecipients, Env: EnvAgeRecipients, Context: "ageRecipients", Flag: SettingAgeRecipients, Kind: List, Lambda: true,
		Help: "age public `key` (age1...) to encrypt dumps to; repeatable",
		Check: func(v any) error {
			for _, r := range v.([]string) {
				if _, err := age.ParseX25519Recipient(r); err != nil {
					return fmt.Errorf("%q is not an age public key (age1..., from age-keygen)", r)
				}
			}
			return nil
		},
		Field: func(c *Config) any { return &c.Recipients }},
	{Name: SettingPollInterval, Env: EnvPollInterval, Context: "pollIntervalSeconds", Flag: SettingPollInterval, Kind: Duration, Lambda: true,
		Default: "5s", Min: int64(time.Second), Max: int64(5 * time.Minute),
		Help:  "wait between export polls",
		Field: func(c *Config) any { return &c.PollInterval }},
	{Name: SettingExportTimeout, Env: EnvExportTimeout, Context: "exportTimeout", Flag: SettingExportTimeout, Kind: Duration, Lambda: true,
		Default: "1h", Min: int64(time.Minute), Max: int64(3 * time.Hour),
		Help:  "give up on an export still running after this long",
		Field: func(c *Config) any { return &c.ExportTimeout }},
	{Name: SettingMaxRestarts, Env: EnvMaxRestarts, Context: "maxRestarts", Flag: SettingMaxRestarts, Kind: Int, Lambda: true,
		Default: "2", Min: 0, Max: 5,
		Help:  "new exports after one stopped or its download URL expired (0: none)",
		Field: func(c *Config) any { return &c.MaxRestarts }},
	{Name: SettingPartSize, Env: EnvPartSize, Context: "partSizeMiB", ContextUnit: miB, Flag: SettingPartSize, Kind: Bytes, Lambda: true,
		Default: "16MiB", Min: 5 * miB, Max: 512 * miB,
		Help:  "multipart upload part size",
		Field: func(c *Config) any { return &c.PartSize }},
	{Name: SettingPartConcurrency, Env: EnvPartConcurrency, Context: "partConcurrency", Flag: SettingPartConcurrency, Kind: Int, Lambda: true,
		Default: "4", Min: 1, Max: 16,
		Help:  "parts of one upload in flight at once",
		Field: func(c *Config) any { return &c.PartConcurrency }},
	{Name: SettingConcurrency, Env: EnvConcurrency, Context: "concurrency", Flag: SettingConcurrency, Kind: Int,
		Default: "4", Min: 1, Max: 40,
		Help:  "databases handled at once (the workflow, backup, status)",
		Field: func(c *Config) any { return &c.Concurrency }},
	{Name: SettingDatabases, Env: EnvDatabases, Context: "databases", Kind: List, Lambda: true,
		Default: "*",
		Help:    "names or UUIDs to back up, or * for every database in the account",
		Check: func(v any) error {
			if l := v.([]string); len(l) > 1 && contains(l, "*") {
				return fmt.Errorf("must be * alone or a list of names/UUIDs")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.Databases }},
	{Name: SettingInclude, Env: EnvInclude, Context: "include", Flag: SettingInclude, Kind: List, Lambda: true,
		Help: "back up only databases whose name matches this `glob` (*, ?, [a-z]); repeatable", Check: globs,
		Field: func(c *Config) any { return &c.Include }},
	{Name: SettingExclude, Env: EnvExclude, Context: "exclude", Flag: SettingExclude, Kind: List, Lambda: true,
		Help: "leave out databases whose name matches this `glob`; repeatable", Check: globs,
		Field: func(c *Config) any { return &c.Exclude }},
	{Name: SettingKeepLast, Env: EnvKeepLast, Context: "keepLast", Flag: SettingKeepLast, Kind: Int, Lambda: true,
		Min: 0, Max: 10000, Help: "retention: keep the newest N backups (0: no such rule)",
		Field: func(c *Config) any { return &c.Retention.KeepLast }},
	{Name: SettingKeepDaily, Env: EnvKeepDaily, Context: "keepDaily", Flag: SettingKeepDaily, Kind: Int, Lambda: true,
		Min: 0, Max: 10000, Help: "retention: keep the newest backup of each of the last N days",
		Field: func(c *Config) any { return &c.Retention.KeepDaily }},
	{Name: SettingKeepWeekly, Env: EnvKeepWeekly, Context: "keepWeekly", Flag: SettingKeepWeekly, Kind: Int, Lambda: true,
		Min: 0, Max: 10000, Help: "retention: keep the newest backup of each of the last N ISO weeks",
		Field: func(c *Config) any { return &c.Retention.KeepWeekly }},
	{Name: SettingKeepMonthly, Env: EnvKeepMonthly, Context: "keepMonthly", Flag: SettingKeepMonthly, Kind: Int, Lambda: true,
		Min: 0, Max: 10000, Help: "retention: keep the newest backup of each of the last N months",
		Field: func(c *Config) any { return &c.Retention.KeepMonthly }},
	{Name: SettingTimeZone, Env: EnvTimeZone, Context: "timezone", Flag: SettingTimeZone, Kind: Zone, Lambda: true,
		Default: "UTC", Help: "IANA time zone retention counts days, weeks and months in",
		Field: func(c *Config) any { return &c.Retention.Location }},
	{Name: SettingVerifyMax, Env: EnvVerifyMaxBytes, Context: "verifyMaxMiB", ContextUnit: miB, Kind: Bytes, Lambda: true,
		Default: "1GiB", Min: 0, Max: 4 * giB,
		Help:  "the workflow verifies dumps up to this size; 0 disables verification",
		Field: func(c *Config) any { return &c.VerifyMaxBytes }},
	{Name: "schedule", Context: "schedule", Kind: String, Default: "cron(0 3 * * ? *)",
		Help: "EventBridge rate(...) or cron(...) expression, UTC", Check: checkSchedule,
		Field: func(c *Config) any { return &c.Schedule }},
	{Name: "alarm-email", Context: "alarmEmail", Kind: String,
		Help: "address subscribed to the alarm topic",
		Check: func(v any) error {
			s := v.(string)
			if s == "" {
				return nil
			}
			if a, err := mail.ParseAddress(s); err != nil || a.Address != s || !strings.Contains(a.Address, ".") {
				return fmt.Errorf("must be an e-mail address")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.AlarmEmail }},
	{Name: "asset-dir", Context: "assetDir", Kind: String, Default: "build/lambda",
		Help: "where scripts/build-lambdas put the Lambda bootstraps",
		Check: func(v any) error {
			if v.(string) == "" {
				return fmt.Errorf("must not be empty")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.AssetDir }},
	{Name: SettingStaleAfter, Env: EnvStaleAfterHours, Context: "staleAfterHours", Flag: "stale-after", Kind: Int, Default: "36", Min: 1, Max: 24 * 7,
		Help:  "a database with no good backup for this many `hours` is stale (status exits 1; the workflow alarms)",
		Field: func(c *Config) any { return &c.StaleAfterHours }},
	{Name: SettingStateMachine, Env: EnvStateMachineARN, Flag: SettingStateMachine, Kind: String,
		Help: "`ARN` of the deployed BackupRun state machine (run, executions)",
		Check: func(v any) error {
			if s := v.(string); s != "" && (!strings.HasPrefix(s, "arn:") || !strings.Contains(s, ":stateMachine:")) {
				return fmt.Errorf("must be a state machine ARN (the BackupRunStateMachineArn output of cdk deploy)")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.StateMachineARN }},
	{Name: SettingMethod, Env: EnvMethod, Context: "method", Flag: SettingMethod, Kind: String, Lambda: true,
		Default: backup.MethodAuto,
		Help:    "`method` of reading databases: export (D1's export; the database answers no queries while it runs), query (the query API, page by page; blocks nobody), auto (export, and the query API where D1 cannot export, e.g. FTS5 tables)",
		Check:   oneOf(backup.Methods()),
		Field:   func(c *Config) any { return &c.Method }},
	{Name: SettingR2Jurisdiction, Env: EnvR2Jurisdiction, Context: "r2Jurisdiction", Kind: String, Lambda: true,
		Default: backup.JurisdictionDefault,
		Help:    "jurisdiction of the R2 bucket: default, eu or fedramp (the endpoint becomes https://<account>.<jurisdiction>.r2.cloudflarestorage.com)",
		Check:   oneOf(backup.Jurisdictions()),
		Field:   func(c *Config) any { return &c.R2Jurisdiction }},
	{Name: SettingAllowCrossJuris, Env: EnvAllowCrossJurisdiction, Context: "allowCrossJurisdiction", Flag: SettingAllowCrossJuris, Kind: Bool, Lambda: true,
		Default: "false",
		Help:    "back up databases with a jurisdiction (eu, fedramp) into a bucket outside it",
		Field:   func(c *Config) any { return &c.AllowCrossJurisdiction }},
	{Name: "store-margin", Env: EnvStoreMargin, Context: "storeMarginSeconds", Kind: Duration, Lambda: true,
		Default: "60s", Min: int64(5 * time.Second), Max: int64(5 * time.Minute),
		Help:  "the store step stops this long before its Lambda's timeout, finishes its parts in flight and saves a checkpoint; the next invocation goes on from it",
		Field: func(c *Config) any { return &c.StoreMargin }},
	{Name: "checkpoint-interval", Env: EnvCheckpointInterval, Context: "checkpointIntervalSeconds", Kind: Duration, Lambda: true,
		Default: "5m", Min: 0, Max: int64(time.Hour),
		Help:  "how often a running store step saves a checkpoint in the background, so a crash loses at most this much (0: only when it stops)",
		Field: func(c *Config) any { return &c.CheckpointInterval }},
}

// oneOf accepts exactly the values listed.
func oneOf(values []string) func(v any) error {
	return func(v any) error {
		if !contains(values, v.(string)) {
			return fmt.Errorf("must be one of %s", strings.Join(values, ", "))
		}
		return nil
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func httpURL(v any) error {
	s := v.(string)
	if s == "" {
		return nil
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("must be an http(s) URL")
	}
	return nil
}

func globs(v any) error {
	for _, p := range v.([]string) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%q is not a glob pattern (*, ?, [a-z])", p)
		}
	}
	return nil
}

// durationText prints 1h or 3h30m rather than 1h0m0s or 3h30m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
