package config_test

import (
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/config"
)

// The schedule is refused at synth for what EventBridge would refuse at
// deploy time, naming the field.
func TestSchedule(t *testing.T) {
	s, ok := config.Lookup("schedule")
	if !ok {
		t.Fatal("no schedule setting")
	}
	for _, tt := range []struct {
		expr    string
		wantErr string
	}{
		{"rate(1 day)", ""},
		{"rate(12 hours)", ""},
		{"cron(0 3 * * ? *)", ""},
		{"cron(15 2/6 ? * MON-FRI *)", ""},
		{"cron(0 3 L * ? *)", ""},
		{"cron(0 3 15W * ? *)", ""},
		{"cron(0 3 ? * 6L *)", ""},
		{"cron(0 3 ? * 2#1 *)", ""},
		{"cron(0,30 3 1,15 JAN-MAR ? 2026-2030)", ""},
		{"cron(0 3 ? * sun *)", ""},
		{"rate(1 days)", "must be an EventBridge expression"},
		{"rate(0 minutes)", "must be an EventBridge expression"},
		{"cron(0 3 * * ?)", "must be an EventBridge expression"},
		{"cron(0 3 * * * *)", "exactly one must be ?"},
		{"cron(0 3 ? * ? *)", "exactly one must be ?"},
		{"cron(60 3 * * ? *)", `cron minutes "60": 60 is not 0-59`},
		{"cron(0 24 * * ? *)", `cron hours "24": 24 is not 0-23`},
		{"cron(0 3 32 * ? *)", `cron day-of-month "32": 32 is not 1-31`},
		{"cron(0 3 ? 13 MON *)", `cron month "13": 13 is not 1-12 or JAN-DEC`},
		{"cron(0 3 ? * MOX *)", `cron day-of-week "MOX": MOX is not 1-7 or SUN-SAT`},
		{"cron(0 3 ? * 2#6 *)", "the week after # must be 1 to 5"},
		{"cron(0 ? * * ? *)", "? is allowed only in day-of-month and day-of-week"},
		{"cron(0/0 3 * * ? *)", "the increment after / must be"},
		{"cron(0 3 * * ? 1969)", `cron year "1969": 1969 is not 1970-2199`},
		{"cron(0 3 L * 1L *)", "exactly one must be ?"},
		{"cron(0 3 W * ? *)", `cron day-of-month "W"`},
		{"cron(0,,5 3 * * ? *)", "empty value"},
	} {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := config.FromContext(func(k string) any {
				if k == s.Context {
					return tt.expr
				}
				return nil
			})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A secret's value never appears in an error, even when it is refused.
func TestSecretValueNotInErrors(t *testing.T) {
	_, err := config.FromEnv(env(map[string]string{"D1BACKUP_SEAL_KEY": "sh0rt-s3cr3t"}))
	if err == nil || !strings.Contains(err.Error(), "D1BACKUP_SEAL_KEY=(a secret, not shown): must be at least 32 characters") || strings.Contains(err.Error(), "sh0rt-s3cr3t") {
		t.Errorf("short sealing key: %v", err)
	}
}
