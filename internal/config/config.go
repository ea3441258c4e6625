package config

import (
	"fmt"
	"github.com/d1backup/d1backup/internal/retention"
	"path"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // retention time zones must resolve on Lambda, which may lack zoneinfo
)

// Config is every setting of a backup run, whatever front door it came through.
type Config struct {
	AccountID  string
	APIToken   string
	APIBaseURL string

	R2AccessKeyID     string
	R2SecretAccessKey string
	R2Bucket          string
	R2Endpoint        string
	Prefix            string

	Compression   string
	PollInterval  time.Duration
	ExportTimeout time.Duration
	MaxRestarts   int
	PartSize      int64
	Concurrency   int

	Databases []string
	Include   []string
	Exclude   []string

	Retention retention.Policy
	// VerifyMaxBytes bounds the dumps the workflow verifies; 0 disables it.
	VerifyMaxBytes int64
	// Recipients are age public keys dumps are encrypted to.
	Recipients []string
}

// Defaults for settings not given.
const (
	DefaultCompression    = "gzip"
	DefaultPollInterval   = 5 * time.Second
	DefaultExportTimeout  = time.Hour
	DefaultMaxRestarts    = 2
	DefaultPartSize       = 16 << 20
	DefaultConcurrency    = 4
	DefaultVerifyMaxBytes = 1 << 30
)

// FromEnv reads the configuration from environment-style variables through
// getenv (os.Getenv, or a lookup over a secret merged with the environment)
// and validates what is set. Required settings are checked by the front door
// that needs them (RequireD1, RequireR2).
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		AccountID:         strings.TrimSpace(getenv(EnvAccountID)),
		APIToken:          strings.TrimSpace(getenv(EnvAPIToken)),
		APIBaseURL:        strings.TrimSpace(getenv(EnvAPIBaseURL)),
		R2AccessKeyID:     strings.TrimSpace(getenv(EnvR2AccessKey)),
		R2SecretAccessKey: strings.TrimSpace(getenv(EnvR2Secret)),
		R2Bucket:          strings.TrimSpace(getenv(EnvR2Bucket)),
		R2Endpoint:        strings.TrimSpace(getenv(EnvR2Endpoint)),
		Prefix:            strings.TrimSpace(getenv(EnvPrefix)),
		Compression:       strings.TrimSpace(getenv(EnvCompression)),
		Databases:         list(getenv(EnvDatabases)),
		Include:           list(getenv(EnvInclude)),
		Exclude:           list(getenv(EnvExclude)),
		Recipients:        list(getenv(EnvAgeRecipients)),
	}
	if c.APIBaseURL == "" {
		c.APIBaseURL = DefaultAPIBaseURL
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	var err error
	if c.PollInterval, err = seconds(getenv, EnvPollInterval, DefaultPollInterval, 1, 300); err != nil {
		return Config{}, err
	}
	if c.ExportTimeout, err = duration(getenv, EnvExportTimeout, DefaultExportTimeout); err != nil {
		return Config{}, err
	}
	if c.MaxRestarts, err = integer(getenv, EnvMaxRestarts, DefaultMaxRestarts, 0, 10); err != nil {
		return Config{}, err
	}
	var part int
	if part, err = integer(getenv, EnvPartSize, DefaultPartSize, 5<<20, 5<<30); err != nil {
		return Config{}, err
	}
	c.PartSize = int64(part)
	if c.Concurrency, err = integer(getenv, EnvConcurrency, DefaultConcurrency, 1, 64); err != nil {
		return Config{}, err
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{EnvKeepLast, &c.Retention.KeepLast}, {EnvKeepDaily, &c.Retention.KeepDaily}, {EnvKeepWeekly, &c.Retention.KeepWeekly}, {EnvKeepMonthly, &c.Retention.KeepMonthly}} {
		if *f.dst, err = integer(getenv, f.name, 0, 0, 100000); err != nil {
			return Config{}, err
		}
	}
	if c.VerifyMaxBytes, err = int64Var(getenv, EnvVerifyMaxBytes, DefaultVerifyMaxBytes); err != nil {
		return Config{}, err
	}
	if tz := strings.TrimSpace(getenv(EnvTimeZone)); tz != "" {
		if c.Retention.Location, err = time.LoadLocation(tz); err != nil {
			return Config{}, fmt.Errorf("%s=%q: not a time zone name such as Europe/Berlin", EnvTimeZone, tz)
		}
	}
	return c, c.Validate()
}

// Validate checks the settings that have a fixed shape.
func (c Config) Validate() error {
	switch c.Compression {
	case "gzip", "zstd", "none":
	default:
		return fmt.Errorf("%s=%q: must be gzip, zstd or none", EnvCompression, c.Compression)
	}
	for _, p := range append(append([]string{}, c.Include...), c.Exclude...) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("glob pattern %q: %v", p, err)
		}
	}
	return nil
}

// RequireD1 checks the settings the D1 API needs.
func (c Config) RequireD1() error {
	switch {
	case c.AccountID == "":
		return fmt.Errorf("%s is not set: the Cloudflare account ID (32 hex characters) owning the databases", EnvAccountID)
	case c.APIToken == "":
		return fmt.Errorf("%s is not set: an API token with Account · D1 · Edit", EnvAPIToken)
	}
	return nil
}

// HasR2 reports whether an R2 bucket is configured.
func (c Config) HasR2() bool { return c.R2Bucket != "" }

// RequireR2 checks the settings R2 needs for bucket.
func (c Config) RequireR2() error {
	switch {
	case c.R2AccessKeyID == "":
		return fmt.Errorf("%s is not set: the R2 API token's access key ID", EnvR2AccessKey)
	case c.R2SecretAccessKey == "":
		return fmt.Errorf("%s is not set: the R2 API token's secret access key", EnvR2Secret)
	case c.Endpoint() == "":
		return fmt.Errorf("%s is not set and there is no %s to derive it from", EnvR2Endpoint, EnvAccountID)
	}
	return nil
}

// Endpoint is the R2 S3 endpoint: R2_ENDPOINT, or the account's default.
func (c Config) Endpoint() string {
	if c.R2Endpoint != "" {
		return c.R2Endpoint
	}
	if c.AccountID == "" {
		return ""
	}
	return "https://" + c.AccountID + ".r2.cloudflarestorage.com"
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func integer(getenv func(string) string, name string, def, lo, hi int) (int, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: must be a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func int64Var(getenv func(string) string, name string, def int64) (int64, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: must be a whole number of bytes, 0 or more", name, v)
	}
	return n, nil
}

func seconds(getenv func(string) string, name string, def time.Duration, lo, hi int) (time.Duration, error) {
	n, err := integer(getenv, name, int(def/time.Second), lo, hi)
	return time.Duration(n) * time.Second, err
}

func duration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: must be a positive duration such as 30m or 2h", name, v)
	}
	return d, nil
}
