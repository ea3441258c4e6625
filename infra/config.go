package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/statemachine"
)

// Config is everything the stack is built from. It comes from CDK context
// (cdk.json or `cdk synth/deploy -c key=value`), read only by main and parsed
// by ParseConfig, so the stack itself reads nothing from its environment.
type Config struct {
	AccountID           string        // cloudflareAccountId: required, 32 hex digits
	Databases           string        // databases: comma-separated names/UUIDs, or * for all (default *)
	Include             string        // include: comma-separated globs over names (default: all)
	Exclude             string        // exclude: comma-separated globs over names (default: none)
	Schedule            string        // schedule: EventBridge rate() or cron() (default cron(0 3 * * ? *), 03:00 UTC)
	Bucket              string        // bucket: required R2 bucket
	Prefix              string        // prefix: key prefix inside the bucket (default "")
	Compression         string        // compression: gzip, zstd or none (default gzip)
	R2Endpoint          string        // r2Endpoint: default "" = https://<account>.r2.cloudflarestorage.com
	PollIntervalSeconds int           // pollIntervalSeconds: 1..300 (default 5)
	ExportTimeout       time.Duration // exportTimeout: Go duration bounding one export, 1m..3h (default 1h)
	MaxRestarts         int           // maxRestarts: new exports after one stopped running, 0..5 (default 2)
	Concurrency         int           // concurrency: databases backed up at once, 1..40 (default 4)
	PartSizeMiB         int           // partSizeMiB: multipart part size, 5..512 (default 16)
	AlarmEmail          string        // alarmEmail: optional address subscribed to the alarm topic
	SecretARN           string        // secretArn: optional existing secret; default: the stack creates one
	AssetDir            string        // assetDir: where scripts/build-lambdas put the bootstraps (default build/lambda)
	AgeRecipients       string        // ageRecipients: comma-separated age public keys to encrypt dumps to (default: none)
	VerifyMaxMiB        int           // verifyMaxMiB: verify dumps up to this size, 0 disables (default 1024)
	KeepLast            int           // keepLast: retention, newest N backups (default 0: keep everything)
	KeepDaily           int           // keepDaily: newest backup of each of the last N days
	KeepWeekly          int           // keepWeekly: newest backup of each of the last N ISO weeks
	KeepMonthly         int           // keepMonthly: newest backup of each of the last N months
	TimeZone            string        // timezone: IANA zone retention counts days in (default UTC)
	StaleAfterHours     int           // staleAfterHours: alarm when a database has no successful backup for this long (default 36)
}

// Context keys and their defaults (cdk.json lists the same defaults).
const (
	KeyAccountID     = "cloudflareAccountId"
	KeyDatabases     = "databases"
	KeyInclude       = "include"
	KeyExclude       = "exclude"
	KeySchedule      = "schedule"
	KeyBucket        = "bucket"
	KeyPrefix        = "prefix"
	KeyCompression   = "compression"
	KeyR2Endpoint    = "r2Endpoint"
	KeyPollInterval  = "pollIntervalSeconds"
	KeyExportTimeout = "exportTimeout"
	KeyMaxRestarts   = "maxRestarts"
	KeyConcurrency   = "concurrency"
	KeyPartSize      = "partSizeMiB"
	KeyAlarmEmail    = "alarmEmail"
	KeySecretARN     = "secretArn"
	KeyAssetDir      = "assetDir"
	KeyAgeRecipients = "ageRecipients"
	KeyVerifyMaxMiB  = "verifyMaxMiB"
	KeyKeepLast      = "keepLast"
	KeyKeepDaily     = "keepDaily"
	KeyKeepWeekly    = "keepWeekly"
	KeyKeepMonthly   = "keepMonthly"
	KeyTimeZone      = "timezone"
	KeyStaleAfter    = "staleAfterHours"

	DefaultDatabases     = "*"
	DefaultSchedule      = "cron(0 3 * * ? *)"
	DefaultCompression   = "gzip"
	DefaultPollInterval  = 5
	DefaultExportTimeout = time.Hour
	DefaultMaxRestarts   = 2
	// DefaultConcurrency keeps polling far below Cloudflare's 1200 requests
	// per 5 minutes: 4 databases polling every 5 s make 48 requests a minute.
	DefaultConcurrency = 4
	DefaultPartSizeMiB = 16
	DefaultAssetDir    = "build/lambda"
	// DefaultVerifyMaxMiB bounds what the verify function loads into its
	// scratch SQLite on /tmp (the stack sizes ephemeral storage to match).
	DefaultVerifyMaxMiB = 1024
	// DefaultStaleAfterHours: a daily schedule plus half a day of slack.
	DefaultStaleAfterHours = 36
)

// Keys lists every context key ParseConfig reads.
var Keys = []string{
	KeyAccountID, KeyDatabases, KeyInclude, KeyExclude, KeySchedule, KeyBucket, KeyPrefix,
	KeyCompression, KeyR2Endpoint, KeyPollInterval, KeyExportTimeout, KeyMaxRestarts,
	KeyConcurrency, KeyPartSize, KeyAlarmEmail, KeySecretARN, KeyAssetDir,
	KeyAgeRecipients, KeyVerifyMaxMiB, KeyKeepLast, KeyKeepDaily, KeyKeepWeekly, KeyKeepMonthly,
	KeyTimeZone, KeyStaleAfter,
}

var (
	accountIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)
	// EventBridge rules: rate(1 unit) is singular, rate(n units) plural;
	// cron() takes six fields.
	rateRe   = regexp.MustCompile(`^rate\((1 (minute|hour|day)|([2-9]|[1-9][0-9]+) (minutes|hours|days))\)$`)
	cronRe   = regexp.MustCompile(`^cron\(\S+( \S+){5}\)$`)
	bucketRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	// A complete secret ARN ends in the 6-character suffix Secrets Manager adds.
	secretARNRe = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$`)
)

// ParseConfig reads the context keys through get (which returns nil for an
// unset key; CDK context values are strings from -c and strings, numbers or
// arrays from cdk.json), applies defaults and validates. The error lists
// every bad key, each naming the key, what it must be and what it got.
func ParseConfig(get func(key string) any) (Config, error) {
	p := parser{get: get}
	c := Config{
		AccountID:           p.str(KeyAccountID, ""),
		Databases:           p.list(KeyDatabases, DefaultDatabases),
		Include:             p.list(KeyInclude, ""),
		Exclude:             p.list(KeyExclude, ""),
		Schedule:            p.str(KeySchedule, DefaultSchedule),
		Bucket:              p.str(KeyBucket, ""),
		Prefix:              p.str(KeyPrefix, ""),
		Compression:         p.str(KeyCompression, DefaultCompression),
		R2Endpoint:          p.str(KeyR2Endpoint, ""),
		PollIntervalSeconds: p.integer(KeyPollInterval, DefaultPollInterval, 1, 300),
		ExportTimeout:       p.duration(KeyExportTimeout, DefaultExportTimeout, time.Minute, 3*time.Hour),
		MaxRestarts:         p.integer(KeyMaxRestarts, DefaultMaxRestarts, 0, 5),
		Concurrency:         p.integer(KeyConcurrency, DefaultConcurrency, 1, 40),
		PartSizeMiB:         p.integer(KeyPartSize, DefaultPartSizeMiB, 5, 512),
		AlarmEmail:          p.str(KeyAlarmEmail, ""),
		SecretARN:           p.str(KeySecretARN, ""),
		AssetDir:            p.str(KeyAssetDir, DefaultAssetDir),
		AgeRecipients:       p.list(KeyAgeRecipients, ""),
		VerifyMaxMiB:        p.integer(KeyVerifyMaxMiB, DefaultVerifyMaxMiB, 0, 4096),
		KeepLast:            p.integer(KeyKeepLast, 0, 0, 10000),
		KeepDaily:           p.integer(KeyKeepDaily, 0, 0, 10000),
		KeepWeekly:          p.integer(KeyKeepWeekly, 0, 0, 10000),
		KeepMonthly:         p.integer(KeyKeepMonthly, 0, 0, 10000),
		TimeZone:            p.str(KeyTimeZone, ""),
		StaleAfterHours:     p.integer(KeyStaleAfter, DefaultStaleAfterHours, 1, 24*31),
	}
	if c.AgeRecipients != "" {
		for _, r := range strings.Split(c.AgeRecipients, ",") {
			if _, err := age.ParseX25519Recipient(r); err != nil {
				p.failGot(KeyAgeRecipients, "must be age public keys (age1..., from age-keygen), comma-separated", r)
				break
			}
		}
	}
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil {
			p.failGot(KeyTimeZone, "must be an IANA time zone such as Europe/Berlin", c.TimeZone)
		}
	}

	switch {
	case c.AccountID == "":
		p.fail(KeyAccountID, "is required: the Cloudflare account ID (32 hex digits, in the dashboard's URL)")
	case !accountIDRe.MatchString(c.AccountID):
		p.failGot(KeyAccountID, "must be 32 lower-case hex digits", c.AccountID)
	}
	if c.Databases != "*" && slices.Contains(strings.Split(c.Databases, ","), "*") {
		p.failGot(KeyDatabases, "must be * alone or a list of names/UUIDs", c.Databases)
	}
	p.globs(KeyInclude, c.Include)
	p.globs(KeyExclude, c.Exclude)
	if !rateRe.MatchString(c.Schedule) && !cronRe.MatchString(c.Schedule) {
		p.failGot(KeySchedule, "must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC)", c.Schedule)
	}
	switch {
	case c.Bucket == "":
		p.fail(KeyBucket, "is required: the R2 bucket the backups go to")
	case !bucketRe.MatchString(c.Bucket):
		p.failGot(KeyBucket, "must be an R2 bucket name (3-63 lower-case letters, digits and hyphens)", c.Bucket)
	}
	if strings.HasPrefix(c.Prefix, "/") {
		p.failGot(KeyPrefix, "must not start with /", c.Prefix)
	}
	switch c.Compression {
	case "gzip", "zstd", "none":
	default:
		p.failGot(KeyCompression, "must be gzip, zstd or none", c.Compression)
	}
	if c.R2Endpoint != "" {
		if u, err := url.Parse(c.R2Endpoint); err != nil || u.Scheme != "https" || u.Host == "" {
			p.failGot(KeyR2Endpoint, "must be an https:// URL (or empty for the account's R2 endpoint)", c.R2Endpoint)
		}
	}
	if c.AlarmEmail != "" {
		if a, err := mail.ParseAddress(c.AlarmEmail); err != nil || a.Address != c.AlarmEmail || !strings.Contains(a.Address, ".") {
			p.failGot(KeyAlarmEmail, "must be an e-mail address", c.AlarmEmail)
		}
	}
	if c.SecretARN != "" && !secretARNRe.MatchString(c.SecretARN) {
		p.failGot(KeySecretARN, "must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)", c.SecretARN)
	}
	if c.AssetDir == "" {
		p.fail(KeyAssetDir, "must not be empty")
	}

	// Every export, the first and each restart, may run to its deadline; what
	// is left of the per-database workflow's own timeout must still hold the
	// store step (up to 15 minutes, plus retries).
	if p.ok(KeyExportTimeout) && p.ok(KeyMaxRestarts) {
		limit, err := workflowTimeout()
		if err != nil {
			return Config{}, err
		}
		if worst := time.Duration(c.MaxRestarts+1) * c.ExportTimeout; worst > limit-30*time.Minute {
			p.fail(KeyExportTimeout, fmt.Sprintf("%s × (%s %d + 1) = %s exceeds the %s that the per-database workflow's %s timeout leaves after 30m for storing the dump; lower %s or %s",
				fmtDuration(c.ExportTimeout), KeyMaxRestarts, c.MaxRestarts, fmtDuration(worst), fmtDuration(limit-30*time.Minute), fmtDuration(limit), KeyExportTimeout, KeyMaxRestarts))
		}
	}
	if err := errors.Join(p.errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// workflowTimeout is the TimeoutSeconds of the per-database state machine,
// read from the definition so the two cannot drift.
func workflowTimeout() (time.Duration, error) {
	var def struct{ TimeoutSeconds int }
	if err := json.Unmarshal([]byte(statemachine.BackupDatabase), &def); err != nil || def.TimeoutSeconds == 0 {
		return 0, fmt.Errorf("infra: backup-database definition has no TimeoutSeconds (%v)", err)
	}
	return time.Duration(def.TimeoutSeconds) * time.Second, nil
}

// parser converts context values and collects errors.
type parser struct {
	get  func(string) any
	errs []error
	bad  map[string]bool
}

func (p *parser) fail(key, msg string) {
	p.errs = append(p.errs, fmt.Errorf("context %q: %s", key, msg))
	if p.bad == nil {
		p.bad = map[string]bool{}
	}
	p.bad[key] = true
}

func (p *parser) failGot(key, msg string, got any) {
	p.fail(key, fmt.Sprintf("%s, got %s", msg, quote(got)))
}

func (p *parser) ok(key string) bool { return !p.bad[key] }

func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// str returns the key's value as a trimmed string; unset or empty means def.
func (p *parser) str(key, def string) string {
	switch v := p.get(key).(type) {
	case nil:
		return def
	case string:
		if s := strings.TrimSpace(v); s != "" {
			return s
		}
		return def
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		p.failGot(key, "must be a string", v)
		return def
	}
}

// list accepts "a, b" or (from cdk.json) ["a", "b"] and returns "a,b".
func (p *parser) list(key, def string) string {
	var items []string
	switch v := p.get(key).(type) {
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				p.failGot(key, "must be a list of strings", v)
				return def
			}
			items = append(items, s)
		}
	default:
		items = strings.Split(p.str(key, ""), ",")
	}
	var out []string
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return def
	}
	return strings.Join(out, ",")
}

func (p *parser) integer(key string, def, min, max int) int {
	var n int
	switch v := p.get(key).(type) {
	case nil:
		return def
	case int:
		n = v
	case float64:
		if v != float64(int(v)) {
			p.failGot(key, fmt.Sprintf("must be a whole number from %d to %d", min, max), v)
			return def
		}
		n = int(v)
	case string:
		if strings.TrimSpace(v) == "" {
			return def
		}
		var err error
		if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
			p.failGot(key, fmt.Sprintf("must be a whole number from %d to %d", min, max), v)
			return def
		}
	default:
		p.failGot(key, fmt.Sprintf("must be a whole number from %d to %d", min, max), v)
		return def
	}
	if n < min || n > max {
		p.failGot(key, fmt.Sprintf("must be from %d to %d", min, max), n)
		return def
	}
	return n
}

func (p *parser) duration(key string, def, min, max time.Duration) time.Duration {
	s := p.str(key, "")
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < min || d > max {
		p.failGot(key, fmt.Sprintf("must be a duration from %s to %s such as 45m or 1h", fmtDuration(min), fmtDuration(max)), s)
		return def
	}
	return d
}

// globs checks comma-separated glob patterns the way the discover step
// matches them (path.Match syntax).
func (p *parser) globs(key, patterns string) {
	if patterns == "" {
		return
	}
	for _, g := range strings.Split(patterns, ",") {
		if _, err := path.Match(g, ""); err != nil {
			p.failGot(key, "must be comma-separated glob patterns (*, ?, [a-z])", g)
			return
		}
	}
}

// fmtDuration prints 1h or 3h30m rather than 1h0m0s or 3h30m0s.
func fmtDuration(d time.Duration) string {
	h, m := d/time.Hour, d%time.Hour/time.Minute
	switch {
	case d%time.Minute != 0:
		return d.String()
	case h > 0 && m > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case h > 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dm", m)
}
