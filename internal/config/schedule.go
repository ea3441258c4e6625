package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// EventBridge rules: rate(1 unit) is singular, rate(n units) plural.
var rateRe = regexp.MustCompile(`^rate\((1 (minute|hour|day)|([2-9]|[1-9][0-9]+) (minutes|hours|days))\)$`)

// cronField is what EventBridge accepts in one field of cron(...): a range
// of numbers, optional names, and the special characters the field allows
// beyond , - * /.
type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
	special  string   // of ? L W #
}

var cronFields = []cronField{
	{name: "minutes", min: 0, max: 59},
	{name: "hours", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31, special: "?LW"},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day-of-week", min: 1, max: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}, special: "?L#"},
	{name: "year", min: 1970, max: 2199},
}

// checkSchedule accepts what EventBridge accepts: rate(n unit), or a
// six-field cron(minutes hours day-of-month month day-of-week year) in UTC
// whose fields hold values in range (, - * / everywhere; ? L W in
// day-of-month; ? L # in day-of-week) and whose day-of-month and
// day-of-week are not both set (exactly one is ?). EventBridge refuses the
// rest at deploy time, long after synth; this says which field is wrong.
func checkSchedule(v any) error {
	s := v.(string)
	if rateRe.MatchString(s) {
		return nil
	}
	body, isCron := strings.CutPrefix(s, "cron(")
	body, closed := strings.CutSuffix(body, ")")
	if !isCron || !closed {
		return fmt.Errorf("must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC)")
	}
	fields := strings.Fields(body)
	if len(fields) != len(cronFields) {
		return fmt.Errorf("must be an EventBridge expression like rate(1 day) or cron(0 3 * * ? *) (six fields, UTC)")
	}
	for i, f := range cronFields {
		if err := f.check(strings.ToUpper(fields[i])); err != nil {
			return fmt.Errorf("cron %s %q: %w", f.name, fields[i], err)
		}
	}
	dom, dow := fields[2], fields[4]
	if (dom == "?") == (dow == "?") {
		return fmt.Errorf("cron day-of-month (%s) and day-of-week (%s): exactly one must be ?, as EventBridge requires", dom, dow)
	}
	return nil
}

func (f cronField) check(field string) error {
	if field == "?" {
		if !strings.Contains(f.special, "?") {
			return fmt.Errorf("? is allowed only in day-of-month and day-of-week")
		}
		return nil
	}
	for _, part := range strings.Split(field, ",") {
		if err := f.checkPart(part); err != nil {
			return err
		}
	}
	return nil
}

func (f cronField) checkPart(part string) error {
	switch {
	case part == "":
		return fmt.Errorf("empty value in a list")
	case part == "L" && strings.Contains(f.special, "L"):
		return nil
	case strings.Contains(f.special, "W") && (part == "LW" || strings.HasSuffix(part, "W")):
		if part == "LW" {
			return nil
		}
		return f.number(strings.TrimSuffix(part, "W"))
	case strings.Contains(f.special, "L") && strings.HasSuffix(part, "L"):
		return f.number(strings.TrimSuffix(part, "L")) // 5L: the last Thursday
	case strings.Contains(f.special, "#") && strings.Contains(part, "#"):
		day, nth, _ := strings.Cut(part, "#")
		if n, err := strconv.Atoi(nth); err != nil || n < 1 || n > 5 {
			return fmt.Errorf("%s: the week after # must be 1 to 5", part)
		}
		return f.number(day)
	}
	rng, step, stepped := strings.Cut(part, "/")
	if stepped {
		if n, err := strconv.Atoi(step); err != nil || n < 1 || n > f.max {
			return fmt.Errorf("%s: the increment after / must be 1 to %d", part, f.max)
		}
	}
	if rng == "*" {
		return nil
	}
	lo, hi, isRange := strings.Cut(rng, "-")
	if err := f.number(lo); err != nil {
		return err
	}
	if isRange {
		return f.number(hi)
	}
	return nil
}

// number checks one value of the field: a number in range or a name.
func (f cronField) number(s string) error {
	for _, n := range f.names {
		if s == n {
			return nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < f.min || n > f.max {
		if len(f.names) > 0 {
			return fmt.Errorf("%s is not %d-%d or %s-%s", s, f.min, f.max, f.names[0], f.names[len(f.names)-1])
		}
		return fmt.Errorf("%s is not %d-%d", s, f.min, f.max)
	}
	return nil
}
