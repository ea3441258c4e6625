package retention_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/retention"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// set builds good backups named by their times.
func set(times ...string) []retention.Backup {
	var out []retention.Backup
	for _, s := range times {
		out = append(out, retention.Backup{ID: s, Time: at(s), Good: true})
	}
	return out
}

func kept(ds []retention.Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.ID)
		}
	}
	slices.Sort(out)
	return out
}

func TestPlan(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	now := at("2026-03-10T12:00:00Z")
	tests := []struct {
		name    string
		backups []retention.Backup
		policy  retention.Policy
		want    []string
	}{
		{
			name:    "no policy keeps everything",
			backups: set("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
			want:    []string{"2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"},
		},
		{
			name:    "keep last 2",
			backups: set("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"),
			policy:  retention.Policy{KeepLast: 2},
			want:    []string{"2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"},
		},
		{
			name:    "daily keeps the newest of each day",
			backups: set("2026-03-01T01:00:00Z", "2026-03-01T23:00:00Z", "2026-03-02T05:00:00Z", "2026-03-02T06:00:00Z"),
			policy:  retention.Policy{KeepDaily: 7},
			want:    []string{"2026-03-01T23:00:00Z", "2026-03-02T06:00:00Z"},
		},
		{
			name:    "daily counts days with backups, across gaps",
			backups: set("2026-02-01T00:00:00Z", "2026-02-15T00:00:00Z", "2026-03-01T00:00:00Z", "2026-03-09T00:00:00Z"),
			policy:  retention.Policy{KeepDaily: 2},
			want:    []string{"2026-03-01T00:00:00Z", "2026-03-09T00:00:00Z"},
		},
		{
			name: "monthly across a year boundary",
			backups: set("2025-11-15T00:00:00Z", "2025-12-01T00:00:00Z", "2025-12-31T23:59:00Z",
				"2026-01-01T00:01:00Z", "2026-01-20T00:00:00Z"),
			policy: retention.Policy{KeepMonthly: 3},
			want:   []string{"2025-11-15T00:00:00Z", "2025-12-31T23:59:00Z", "2026-01-20T00:00:00Z"},
		},
		{
			name: "weekly uses ISO weeks (2026-01-01 is in week 1 of 2026, 2025-12-29 too)",
			backups: set("2025-12-22T00:00:00Z", "2025-12-29T00:00:00Z", "2026-01-01T00:00:00Z",
				"2026-01-05T00:00:00Z"),
			policy: retention.Policy{KeepWeekly: 2},
			want:   []string{"2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"},
		},
		{
			name:    "time zone moves a late backup to the previous day",
			backups: set("2026-03-02T03:00:00Z", "2026-03-02T02:00:00Z", "2026-03-01T20:00:00Z"),
			// In New York 03:00Z and 02:00Z on 2 March are still 1 March.
			policy: retention.Policy{KeepDaily: 1, Location: ny},
			want:   []string{"2026-03-02T03:00:00Z"},
		},
		{
			name:    "UTC days for the same backups",
			backups: set("2026-03-02T03:00:00Z", "2026-03-02T02:00:00Z", "2026-03-01T20:00:00Z"),
			policy:  retention.Policy{KeepDaily: 2},
			want:    []string{"2026-03-01T20:00:00Z", "2026-03-02T03:00:00Z"},
		},
		{
			name:    "rules combine",
			backups: set("2026-01-10T00:00:00Z", "2026-02-10T00:00:00Z", "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z", "2026-03-10T00:00:00Z"),
			policy:  retention.Policy{KeepLast: 1, KeepDaily: 2, KeepMonthly: 3},
			want:    []string{"2026-01-10T00:00:00Z", "2026-02-10T00:00:00Z", "2026-03-09T00:00:00Z", "2026-03-10T00:00:00Z"},
		},
		{
			name: "failed backups take no slot and go, unless recent",
			backups: append(set("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
				retention.Backup{ID: "failed-old", Time: at("2026-03-05T00:00:00Z")},
				retention.Backup{ID: "failed-recent", Time: at("2026-03-10T06:00:00Z")}),
			policy: retention.Policy{KeepLast: 1},
			want:   []string{"2026-03-02T00:00:00Z", "failed-recent"},
		},
		{
			name:    "never prune while no good backup exists",
			backups: []retention.Backup{{ID: "a", Time: at("2026-01-01T00:00:00Z")}, {ID: "b", Time: at("2026-02-01T00:00:00Z")}},
			policy:  retention.Policy{KeepLast: 1},
			want:    []string{"a", "b"},
		},
		{
			name: "newest verified backup is kept even outside every rule",
			backups: []retention.Backup{
				{ID: "verified-old", Time: at("2026-01-01T00:00:00Z"), Good: true, Verified: true},
				{ID: "new1", Time: at("2026-03-01T00:00:00Z"), Good: true},
				{ID: "new2", Time: at("2026-03-02T00:00:00Z"), Good: true},
			},
			policy: retention.Policy{KeepLast: 1},
			want:   []string{"new2", "verified-old"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := retention.Plan(tt.backups, tt.policy, now)
			if got := kept(ds); !slices.Equal(got, tt.want) {
				t.Errorf("kept %v\nwant %v", got, tt.want)
			}
			for _, d := range ds {
				if len(d.Reasons) == 0 {
					t.Errorf("%s: no reason given", d.ID)
				}
			}
		})
	}
}

func TestReasonsExplain(t *testing.T) {
	ds := retention.Plan(set("2026-03-01T00:00:00Z", "2026-03-09T00:00:00Z"), retention.Policy{KeepLast: 1, KeepMonthly: 1}, at("2026-03-10T00:00:00Z"))
	got := strings.Join(ds[0].Reasons, "; ")
	for _, want := range []string{"newest good backup", "last 1 (#1)", "monthly 2026-03 (1 of 1)"} {
		if !strings.Contains(got, want) {
			t.Errorf("reasons %q lack %q", got, want)
		}
	}
	if ds[1].Keep || ds[1].Reasons[0] != "matched no rule" {
		t.Errorf("second backup %+v, want deleted because it matched no rule", ds[1])
	}
}

func TestValidate(t *testing.T) {
	if err := (retention.Policy{KeepDaily: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "keep-daily") {
		t.Errorf("Validate = %v, want error naming keep-daily", err)
	}
}

// A held backup is kept whatever the rules say, and never counts as the good
// backup that lets others go.
func TestHold(t *testing.T) {
	now := at("2026-03-10T12:00:00Z")
	backups := set("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")
	backups = append(backups, retention.Backup{ID: "held", Time: at("2026-03-05T00:00:00Z"), Good: true, Hold: "its manifest could not be read"})
	ds := retention.Plan(backups, retention.Policy{KeepLast: 1}, now)
	if got, want := kept(ds), []string{"2026-03-02T00:00:00Z", "held"}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	for _, d := range ds {
		if d.ID == "held" && !strings.Contains(strings.Join(d.Reasons, ";"), "could not be read") {
			t.Errorf("held backup's reasons %v", d.Reasons)
		}
	}
}
