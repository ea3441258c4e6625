package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // retention time zones must resolve on Lambda, which may lack zoneinfo

	"github.com/spf13/pflag"
)

// FromEnv reads the configuration from environment-style variables through
// getenv (os.Getenv, or a lookup over a secret merged with the environment):
// defaults, then every setting that has a variable. Errors name the variable.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Defaults()
	var errs []error
	for _, s := range table {
		if s.Env == "" {
			continue
		}
		if v := strings.TrimSpace(getenv(s.Env)); v != "" {
			if err := s.set(&c, v, 0); err != nil {
				shown := strconv.Quote(v)
				if s.Secret {
					shown = "(a secret, not shown)"
				}
				errs = append(errs, fmt.Errorf("%s=%s: %w", s.Env, shown, err))
			}
		}
	}
	if len(errs) == 0 {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errorsJoin(errs)
}

// FromContext reads the configuration from CDK context through get, which
// returns nil for an unset key, a string for -c key=value, and a string,
// number or array from cdk.json: defaults, then every setting that has a
// context key. The error lists every bad key.
func FromContext(get func(key string) any) (Config, error) {
	c := Defaults()
	var errs []error
	for _, s := range table {
		if s.Context == "" {
			continue
		}
		raw := get(s.Context)
		text, err := contextText(raw)
		if err == nil && strings.TrimSpace(text) != "" {
			err = s.set(&c, strings.TrimSpace(text), s.ContextUnit)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("context %q: %w, got %s", s.Context, err, quote(raw)))
		}
	}
	if len(errs) == 0 {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errorsJoin(errs)
}

// contextText turns a context value into the text a setting parses.
func contextText(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case int:
		return strconv.Itoa(v), nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("must be a list of strings")
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("must be a string or a number")
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// set parses text as s's value into c. unit is what a bare number means
// for Bytes (0: bytes).
func (s Setting) set(c *Config, text string, unit int64) error {
	dst := s.Field(c)
	switch s.Kind {
	case String:
		if err := s.check(text); err != nil {
			return err
		}
		*dst.(*string) = text
	case Int:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || n < s.Min || n > s.Max {
			return fmt.Errorf("must be a whole number from %d to %d", s.Min, s.Max)
		}
		if err := s.check(int(n)); err != nil {
			return err
		}
		*dst.(*int) = int(n)
	case Duration:
		d, err := parseDuration(text)
		if err != nil || int64(d) < s.Min || int64(d) > s.Max {
			return fmt.Errorf("must be a duration from %s to %s, such as 45m or 1h (a bare number is seconds)", durationText(time.Duration(s.Min)), durationText(time.Duration(s.Max)))
		}
		if err := s.check(d); err != nil {
			return err
		}
		*dst.(*time.Duration) = d
	case Bytes:
		n, err := parseBytes(text, unit)
		if err != nil || n < s.Min || n > s.Max {
			return fmt.Errorf("must be a size from %s to %s, such as 16MiB", BytesText(s.Min), BytesText(s.Max))
		}
		if err := s.check(n); err != nil {
			return err
		}
		*dst.(*int64) = n
	case List:
		l := splitList(text)
		if err := s.check(l); err != nil {
			return err
		}
		*dst.(*[]string) = l
	case Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("must be true or false")
		}
		*dst.(*bool) = b
	case Zone:
		loc, err := time.LoadLocation(text)
		if err != nil || text == "" || text == "Local" {
			return fmt.Errorf("must be an IANA time zone name such as Europe/Berlin")
		}
		*dst.(**time.Location) = loc
	default:
		return fmt.Errorf("setting %s has unknown kind %d", s.Name, s.Kind)
	}
	return nil
}

func (s Setting) check(v any) error {
	if s.Check == nil {
		return nil
	}
	return s.Check(v)
}

// Text formats s's value in c in the syntax of its environment variable
// (what FromEnv reads back to the same value).
func (s Setting) Text(c Config) string {
	switch v := s.Field(&c).(type) {
	case *string:
		return *v
	case *int:
		return strconv.Itoa(*v)
	case *time.Duration:
		return durationText(*v)
	case *int64:
		return BytesText(*v)
	case *[]string:
		return strings.Join(*v, ",")
	case *bool:
		return strconv.FormatBool(*v)
	case **time.Location:
		if *v == nil {
			return "UTC"
		}
		return (*v).String()
	}
	return ""
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < 0 {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

var byteUnits = []struct {
	suffix string
	n      int64
}{{"GiB", giB}, {"MiB", miB}, {"KiB", kiB}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

// parseBytes reads "16MiB", "1.5GiB", "5000000"; a bare number is in unit
// (bytes when 0).
func parseBytes(s string, unit int64) (int64, error) {
	s = strings.TrimSpace(s)
	mult := unit
	if mult == 0 {
		mult = 1
	}
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("not a size")
	}
	n := f * float64(mult)
	if n != math.Trunc(n) {
		return 0, fmt.Errorf("not a whole number of bytes")
	}
	return int64(n), nil
}

// BytesText prints n as the largest binary unit that divides it exactly
// (16MiB, 1GiB), else in bytes.
func BytesText(n int64) string {
	for _, u := range byteUnits[:3] {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// LambdaEnv is the environment the deployed functions get: every
// non-secret setting they read, in the syntax FromEnv reads back. Empty
// values are left out.
func LambdaEnv(c Config) map[string]string {
	env := map[string]string{}
	for _, s := range table {
		if !s.Lambda || s.Secret || s.Env == "" {
			continue
		}
		if v := s.Text(c); v != "" {
			env[s.Env] = v
		}
	}
	return env
}

// BindFlags registers a flag on fs for each named setting (which must have
// a Flag). Parsed flags are applied by ApplyFlags; their help names the
// environment variable that otherwise sets them and its default.
func BindFlags(fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		s, ok := Lookup(name)
		if !ok || s.Flag == "" {
			panic(fmt.Sprintf("config: no flag for setting %q", name))
		}
		fs.Var(&flagValue{s: s}, s.Flag, s.flagHelp())
		if f := fs.Lookup(s.Flag); f != nil {
			f.DefValue = "" // the help already says the default
			if s.Kind == Bool {
				f.NoOptDefVal = "true" // --flag alone
			}
		}
	}
}

func (s Setting) flagHelp() string {
	var notes []string
	if s.Env != "" {
		notes = append(notes, "env "+s.Env)
	}
	if s.Default != "" {
		notes = append(notes, "default "+s.Default)
	}
	if len(notes) == 0 {
		return s.Help
	}
	return s.Help + " (" + strings.Join(notes, "; ") + ")"
}

// ApplyFlags overrides c with every flag of fs bound by BindFlags that was
// set on the command line. Errors name the flag.
func ApplyFlags(c *Config, fs *pflag.FlagSet) error {
	var errs []error
	fs.Visit(func(f *pflag.Flag) {
		fv, ok := f.Value.(*flagValue)
		if !ok {
			return
		}
		text := strings.Join(fv.values, ",")
		if err := fv.s.set(c, text, 0); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", f.Name, text, err))
		}
	})
	if len(errs) == 0 {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errorsJoin(errs)
}

// flagValue collects a setting's flag text; List flags are repeatable.
type flagValue struct {
	s      Setting
	values []string
}

func (f *flagValue) String() string { return strings.Join(f.values, ",") }

func (f *flagValue) Set(v string) error {
	if f.s.Kind == List {
		f.values = append(f.values, v)
	} else {
		f.values = []string{v}
	}
	// Check early so pflag reports the flag with the error.
	var scratch Config
	return f.s.set(&scratch, strings.Join(f.values, ","), 0)
}

func (f *flagValue) Type() string {
	switch f.s.Kind {
	case Int:
		return "N"
	case Duration:
		return "duration"
	case Bytes:
		return "size"
	case Zone:
		return "zone"
	case Bool:
		return "bool"
	}
	return "string"
}
