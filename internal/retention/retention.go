// Package retention decides which backups of one database to keep: the last
// N, plus the newest backup of each of the last D days, W weeks and M months
// (grandfather-father-son), with two guards no rule can override: the newest
// good (verified, when any is) backup is always kept, and nothing is deleted
// while no good backup exists.
package retention

import (
	"fmt"
	"sort"
	"time"
)

// Policy is a retention policy. All counts zero means keep everything.
type Policy struct {
	KeepLast    int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	// Location is the time zone days, weeks and months are counted in; UTC
	// if nil. A backup at 23:30 in New York belongs to that day there.
	Location *time.Location
	// InProgressGrace protects dumps that have no manifest yet: younger
	// than this they may still be being written. Default 24 h.
	InProgressGrace time.Duration
}

// Backup is one backup as retention sees it.
type Backup struct {
	// ID identifies the backup (its dump key); Keys are every object that
	// belongs to it (dump and manifest), deleted together.
	ID   string
	Keys []string
	// Time is when the backup's export completed.
	Time time.Time
	// Good is false for a dump without a manifest (an interrupted or
	// failed backup) or one whose verification failed.
	Good bool
	// Verified is true when a verification of the backup succeeded.
	Verified bool
	// Hold, when set, says why the backup must not be deleted whatever the
	// rules say (its manifest could not be read, it does not match its
	// manifest): it is kept, and it does not count as good.
	Hold string
}

// Decision says what happens to one backup and why.
type Decision struct {
	Backup
	Keep    bool
	Reasons []string
}

// Enabled reports whether the policy deletes anything at all.
func (p Policy) Enabled() bool {
	return p.KeepLast > 0 || p.KeepDaily > 0 || p.KeepWeekly > 0 || p.KeepMonthly > 0
}

// Validate rejects negative counts.
func (p Policy) Validate() error {
	for name, n := range map[string]int{"keep-last": p.KeepLast, "keep-daily": p.KeepDaily, "keep-weekly": p.KeepWeekly, "keep-monthly": p.KeepMonthly} {
		if n < 0 {
			return fmt.Errorf("retention %s = %d: must not be negative", name, n)
		}
	}
	return nil
}

// Plan decides, newest first, for the backups of one database at time now.
func Plan(backups []Backup, p Policy, now time.Time) []Decision {
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	grace := p.InProgressGrace
	if grace == 0 {
		grace = 24 * time.Hour
	}
	ds := make([]Decision, len(backups))
	for i, b := range backups {
		ds[i] = Decision{Backup: b}
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Time.After(ds[j].Time) })

	keep := func(d *Decision, reason string) {
		d.Keep = true
		d.Reasons = append(d.Reasons, reason)
	}
	if !p.Enabled() {
		for i := range ds {
			keep(&ds[i], "no retention policy: everything is kept")
		}
		return ds
	}

	for i := range ds {
		if ds[i].Hold != "" {
			ds[i].Good = false
			keep(&ds[i], ds[i].Hold)
		}
	}
	newestGood, newestVerified := -1, -1
	for i := range ds {
		if ds[i].Good && newestGood < 0 {
			newestGood = i
		}
		if ds[i].Good && ds[i].Verified && newestVerified < 0 {
			newestVerified = i
		}
	}
	if newestGood < 0 {
		for i := range ds {
			if !ds[i].Keep {
				keep(&ds[i], "no good backup exists: nothing is pruned")
			}
		}
		return ds
	}
	if newestVerified >= 0 {
		keep(&ds[newestVerified], "newest verified backup")
	} else {
		keep(&ds[newestGood], "newest good backup")
	}

	type bucketRule struct {
		n     int
		name  string
		label func(time.Time) string
	}
	rules := []bucketRule{
		{p.KeepDaily, "daily", func(t time.Time) string { return t.Format("2006-01-02") }},
		{p.KeepWeekly, "weekly", func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%04d-W%02d", y, w) }},
		{p.KeepMonthly, "monthly", func(t time.Time) string { return t.Format("2006-01") }},
	}
	last := 0
	for i := range ds {
		d := &ds[i]
		if !d.Good {
			continue
		}
		if last < p.KeepLast {
			last++
			keep(d, fmt.Sprintf("last %d (#%d)", p.KeepLast, last))
		}
	}
	for _, r := range rules {
		if r.n <= 0 {
			continue
		}
		seen := map[string]bool{}
		for i := range ds {
			d := &ds[i]
			if !d.Good {
				continue
			}
			label := r.label(d.Time.In(loc))
			if seen[label] {
				continue
			}
			if len(seen) >= r.n {
				break
			}
			seen[label] = true
			keep(d, fmt.Sprintf("%s %s (%d of %d)", r.name, label, len(seen), r.n))
		}
	}
	for i := range ds {
		d := &ds[i]
		if !d.Good && now.Sub(d.Time) < grace {
			keep(d, fmt.Sprintf("unfinished backup younger than %s: may still be in progress", grace))
		}
		if !d.Keep && len(d.Reasons) == 0 {
			if d.Good {
				d.Reasons = append(d.Reasons, "matched no rule")
			} else {
				d.Reasons = append(d.Reasons, "unfinished or failed backup")
			}
		}
	}
	return ds
}
