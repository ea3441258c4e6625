package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/d1backup/d1backup/internal/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnvValues(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		get  func(config.Config) any
		want any
	}{
		{"default restarts", nil, func(c config.Config) any { return c.MaxRestarts }, 2},
		{"no restarts is expressible", map[string]string{"D1BACKUP_MAX_RESTARTS": "0"}, func(c config.Config) any { return c.MaxRestarts }, 0},
		{"poll as seconds", map[string]string{"D1BACKUP_POLL_INTERVAL": "7"}, func(c config.Config) any { return c.PollInterval }, 7 * time.Second},
		{"poll as duration", map[string]string{"D1BACKUP_POLL_INTERVAL": "1m30s"}, func(c config.Config) any { return c.PollInterval }, 90 * time.Second},
		{"part size in bytes", map[string]string{"D1BACKUP_PART_SIZE": "8388608"}, func(c config.Config) any { return c.PartSize }, int64(8 << 20)},
		{"part size with unit", map[string]string{"D1BACKUP_PART_SIZE": "32MiB"}, func(c config.Config) any { return c.PartSize }, int64(32 << 20)},
		{"verify off", map[string]string{"D1BACKUP_VERIFY_MAX_BYTES": "0"}, func(c config.Config) any { return c.VerifyMaxBytes }, int64(0)},
		{"list trimmed", map[string]string{"D1BACKUP_INCLUDE": " a-* ,, b "}, func(c config.Config) any { return strings.Join(c.Include, "|") }, "a-*|b"},
		{"databases default", nil, func(c config.Config) any { return strings.Join(c.Databases, "|") }, "*"},
		{"part concurrency", map[string]string{"D1BACKUP_PART_CONCURRENCY": "8"}, func(c config.Config) any { return c.PartConcurrency }, 8},
		{"databases at once", map[string]string{"D1BACKUP_CONCURRENCY": "9"}, func(c config.Config) any { return c.Concurrency }, 9},
		{"zone", map[string]string{"D1BACKUP_TIMEZONE": "Asia/Tokyo"}, func(c config.Config) any { return c.Location().String() }, "Asia/Tokyo"},
		{"api base default", nil, func(c config.Config) any { return c.APIBaseURL }, config.DefaultAPIBaseURL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.FromEnv(env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(c); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromEnvErrorsNameTheVariable(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"D1BACKUP_COMPRESSION": "lz4"}, `D1BACKUP_COMPRESSION="lz4": must be one of gzip, zstd, none`},
		{map[string]string{"D1BACKUP_MAX_RESTARTS": "6"}, `D1BACKUP_MAX_RESTARTS="6": must be a whole number from 0 to 5`},
		{map[string]string{"D1BACKUP_KEEP_DAILY": "-1"}, `D1BACKUP_KEEP_DAILY="-1": must be a whole number from 0 to 10000`},
		{map[string]string{"D1BACKUP_EXPORT_TIMEOUT": "10s"}, `D1BACKUP_EXPORT_TIMEOUT="10s": must be a duration from 1m to 3h`},
		{map[string]string{"D1BACKUP_PART_SIZE": "4MiB"}, `D1BACKUP_PART_SIZE="4MiB": must be a size from 5MiB to 512MiB`},
		{map[string]string{"D1BACKUP_PART_SIZE": "1.5"}, `D1BACKUP_PART_SIZE="1.5": must be a size`},
		{map[string]string{"D1BACKUP_AGE_RECIPIENTS": "age1x"}, `D1BACKUP_AGE_RECIPIENTS="age1x": "age1x" is not an age public key`},
		{map[string]string{"D1BACKUP_TIMEZONE": "Mars/Base"}, `D1BACKUP_TIMEZONE="Mars/Base": must be an IANA time zone name`},
		{map[string]string{"CLOUDFLARE_ACCOUNT_ID": "ABC"}, `CLOUDFLARE_ACCOUNT_ID="ABC": must be 32 lower-case hex digits`},
		{map[string]string{"D1BACKUP_INCLUDE": "[a"}, `D1BACKUP_INCLUDE="[a": "[a" is not a glob pattern`},
		{map[string]string{"D1BACKUP_DATABASES": "a,*"}, `D1BACKUP_DATABASES="a,*": must be * alone`},
	} {
		_, err := config.FromEnv(env(tt.env))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("FromEnv(%v) = %v, want an error starting %q", tt.env, err, tt.want)
		}
	}
}

// The Lambda environment the stack writes reads back to the configuration
// it was made from, for every setting the functions read.
func TestLambdaEnvRoundTrips(t *testing.T) {
	c, err := config.FromEnv(env(map[string]string{
		"CLOUDFLARE_ACCOUNT_ID": strings.Repeat("ab", 16), "R2_BUCKET": "backups", "D1BACKUP_PREFIX": "d1/",
		"D1BACKUP_COMPRESSION": "zstd", "D1BACKUP_POLL_INTERVAL": "90", "D1BACKUP_EXPORT_TIMEOUT": "2h30m",
		"D1BACKUP_MAX_RESTARTS": "0", "D1BACKUP_PART_SIZE": "7340032", "D1BACKUP_INCLUDE": "a*,b*",
		"D1BACKUP_KEEP_WEEKLY": "8", "D1BACKUP_TIMEZONE": "Europe/Berlin", "D1BACKUP_VERIFY_MAX_BYTES": "123456789",
		"D1BACKUP_AGE_RECIPIENTS": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
	}))
	if err != nil {
		t.Fatal(err)
	}
	lambdaEnv := config.LambdaEnv(c)
	for _, s := range config.Settings() {
		if s.Secret {
			if _, ok := lambdaEnv[s.Env]; ok {
				t.Errorf("secret %s in the Lambda environment", s.Env)
			}
		}
	}
	back, err := config.FromEnv(env(lambdaEnv))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings() {
		if !s.Lambda || s.Secret {
			continue
		}
		if got, want := s.Text(back), s.Text(c); got != want {
			t.Errorf("%s: %q after the round trip, want %q", s.Env, got, want)
		}
	}
	if back.PollInterval != 90*time.Second || back.MaxRestarts != 0 || back.PartSize != 7<<20 || back.Location().String() != "Europe/Berlin" {
		t.Errorf("round trip lost values: %+v", back)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	c, err := config.FromEnv(env(map[string]string{"D1BACKUP_COMPRESSION": "zstd", "D1BACKUP_KEEP_LAST": "3"}))
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.BindFlags(fs, config.SettingCompression, config.SettingKeepLast, config.SettingAgeRecipients, config.SettingMaxRestarts)
	const r1, r2 = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg"
	if err := fs.Parse([]string{"--compression", "none", "--age-recipient", r1, "--age-recipient", r2, "--max-restarts=0"}); err != nil {
		t.Fatal(err)
	}
	if err := config.ApplyFlags(&c, fs); err != nil {
		t.Fatal(err)
	}
	if c.Compression != "none" || c.Retention.KeepLast != 3 || !reflect.DeepEqual(c.Recipients, []string{r1, r2}) || c.MaxRestarts != 0 {
		t.Errorf("after flags: compression %s keep-last %d recipients %v restarts %d", c.Compression, c.Retention.KeepLast, c.Recipients, c.MaxRestarts)
	}
	// A bad value is refused by the flag itself, naming it.
	fs = pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.BindFlags(fs, config.SettingCompression)
	err = fs.Parse([]string{"--compression", "lz4"})
	if err == nil || !strings.Contains(err.Error(), `invalid argument "lz4" for "--compression" flag: must be one of gzip, zstd, none`) {
		t.Errorf("bad flag: %v", err)
	}
}

func TestFlagHelpNamesEnvAndDefault(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.BindFlags(fs, config.SettingKeepDaily, config.SettingPollInterval)
	usage := fs.FlagUsages()
	for _, want := range []string{"--keep-daily N", "(env D1BACKUP_KEEP_DAILY)", "--poll-interval duration", "(env D1BACKUP_POLL_INTERVAL; default 5s)"} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, usage)
		}
	}
	if strings.Contains(usage, "(default") {
		t.Errorf("usage shows a sentinel default:\n%s", usage)
	}
}

// The table itself is consistent: names unique, every setting reachable
// from some front door, defaults valid, ranges sane.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range config.Settings() {
		for _, id := range []string{"name:" + s.Name, "env:" + s.Env, "context:" + s.Context, "flag:" + s.Flag} {
			if strings.HasSuffix(id, ":") {
				continue
			}
			if seen[id] {
				t.Errorf("%s used twice", id)
			}
			seen[id] = true
		}
		if s.Env == "" && s.Context == "" && s.Flag == "" {
			t.Errorf("%s: no env, context key or flag", s.Name)
		}
		if s.Help == "" || s.Field == nil {
			t.Errorf("%s: no help or field", s.Name)
		}
		if s.Min > s.Max {
			t.Errorf("%s: min %d > max %d", s.Name, s.Min, s.Max)
		}
		if s.Secret && (s.Context != "" || s.Flag != "") {
			t.Errorf("%s: a secret must not be a context key or a flag (it would end up in a template or a shell history)", s.Name)
		}
	}
	// Defaults() parses every default.
	d := config.Defaults()
	if d.Compression != "gzip" || d.PartSize != 16<<20 || d.ExportTimeout != time.Hour {
		t.Errorf("defaults: %+v", d)
	}
}
