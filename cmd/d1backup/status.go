package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
)

const statusLong = `Says whether every database is backed up: one row per database with backups
in the destination and, when the D1 credentials are set, per database in the
account (picked by D1BACKUP_DATABASES and --include/--exclude, as the
workflow picks them), so one that was never backed up shows as NEVER.

States:
  OK      the newest good backup is younger than --stale-after
  STALE   the newest good backup is older than --stale-after
  FAILED  the newest backup is not good (no manifest: the run stopped before
          it was complete; a manifest that is not one; a failed verification)
  NEVER   no good backup at all

Exit status 1 when any database is not OK, so it can gate CI or a cron job.
A database with backups that is no longer in the account (or not selected)
is shown but not counted. Only manifests are read: the newest of each
database until a good one, several databases at once. Nothing is written.`

func newStatusCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "status [--stale-after hours]",
		Short:   "Is everything backed up? One row per database; exit 1 when any is not OK",
		Long:    statusLong,
		Example: "  d1backup status\n  d1backup status --dest r2://backups/prod --stale-after 26 --json",
		Args:    noArgs,
	}
	d := destFlag(cmd, "of the backups")
	asJSON := jsonFlag(cmd)
	config.BindFlags(cmd.Flags(), config.SettingStaleAfter, config.SettingInclude, config.SettingExclude, config.SettingConcurrency)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		cfg, st, err := configAndDest(cmd, e, *d)
		if err != nil {
			return err
		}
		now := time.Now()
		opts := backup.StatusOptions{Now: now, StaleAfter: time.Duration(cfg.StaleAfterHours) * time.Hour, Concurrency: cfg.Concurrency}
		if cfg.RequireD1() == nil {
			if opts.Expected, err = expectedDatabases(ctx, cfg); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(e.stderr, "note: %s and %s are not set: only databases with backups in %s are shown (one never backed up cannot be seen)\n",
				config.EnvAccountID, config.EnvAPIToken, clean(st.String()))
		}
		statuses, err := backup.Status(ctx, st, opts)
		if err != nil {
			return err
		}
		out := statusJSON{CheckedAt: now.UTC(), Destination: st.String(), StaleAfterHours: cfg.StaleAfterHours,
			AccountListed: opts.Expected != nil, Databases: []databaseStatusJSON{}, OK: true}
		var bad []string
		for _, s := range statuses {
			out.Databases = append(out.Databases, newDatabaseStatus(s))
			if s.Expected && s.State != backup.StateOK {
				out.OK = false
				bad = append(bad, fmt.Sprintf("%s (%s)", clean(nameOr(s.DatabaseName, s.DatabaseID)), s.State))
			}
		}
		if *asJSON {
			if err := printJSON(e.stdout, out); err != nil {
				return err
			}
		} else {
			printStatus(e, out, now)
		}
		if len(bad) > 0 {
			return fmt.Errorf("%d of %s need attention: %s", len(bad), count(countExpected(statuses), "database", "databases"), strings.Join(bad, ", "))
		}
		return nil
	}
	return cmd
}

// expectedDatabases lists the account's databases the selection picks.
func expectedDatabases(ctx context.Context, cfg config.Config) ([]backup.Target, error) {
	api, err := cfg.D1Client(http.DefaultClient)
	if err != nil {
		return nil, err
	}
	targets, err := backup.Discover(ctx, api, cfg.Selection())
	if err != nil {
		return nil, backup.Classified(err)
	}
	if targets == nil {
		targets = []backup.Target{}
	}
	return targets, nil
}

// statusJSON is `status --json`.
type statusJSON struct {
	CheckedAt       time.Time `json:"checked_at"`
	Destination     string    `json:"destination"`
	StaleAfterHours int       `json:"stale_after_hours"`
	// AccountListed is true when the account's databases were listed (D1
	// credentials set), so NEVER covers databases without any backup.
	AccountListed bool                 `json:"account_listed"`
	Databases     []databaseStatusJSON `json:"databases"`
	// OK is true when every expected database is OK (exit status 0).
	OK bool `json:"ok"`
}

type databaseStatusJSON struct {
	DatabaseID   string       `json:"database_id"`
	DatabaseName string       `json:"database_name"`
	State        backup.State `json:"state"`
	Reason       string       `json:"reason,omitempty"`
	// Expected is false for a database with backups that is no longer in
	// the account or not selected: shown, not counted.
	Expected bool `json:"expected"`
	// Backups counts the backups with a manifest (what retention keeps).
	Backups  int              `json:"backups"`
	LastGood *backupJSON      `json:"last_good"`
	Skipped  []backup.Skipped `json:"skipped"`
}

func newDatabaseStatus(s backup.DatabaseStatus) databaseStatusJSON {
	j := databaseStatusJSON{DatabaseID: s.DatabaseID, DatabaseName: s.DatabaseName, State: s.State, Reason: s.Reason,
		Expected: s.Expected, Backups: s.Backups, Skipped: s.Skipped}
	if j.Skipped == nil {
		j.Skipped = []backup.Skipped{}
	}
	if s.LastGood != nil {
		b := newBackupJSON(s.LastGood)
		j.LastGood = &b
	}
	return j
}

func countExpected(ss []backup.DatabaseStatus) int {
	n := 0
	for _, s := range ss {
		if s.Expected {
			n++
		}
	}
	return n
}

func nameOr(name, id string) string {
	if name == "" {
		return id
	}
	return name
}

func printStatus(e env, out statusJSON, now time.Time) {
	tw := table(e.stdout)
	fmt.Fprintln(tw, "DATABASE\tSTATE\tLAST GOOD\tSIZE\tFORMAT\tVERIFIED\tMETHOD\tKEPT")
	counts := map[backup.State]int{}
	var notes []string
	for _, s := range out.Databases {
		name := truncate(clean(nameOr(s.DatabaseName, s.DatabaseID)), 28)
		state := string(s.State)
		if s.Expected {
			counts[s.State]++
		} else {
			state += "*"
		}
		if s.Reason != "" || !s.Expected {
			note := name + ": " + clean(s.Reason)
			if !s.Expected {
				note = strings.TrimSuffix(note, ": ") + " (* not in the account's selected databases: not counted)"
			}
			notes = append(notes, note)
		}
		b := s.LastGood
		if b == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%d\n", name, state, s.Backups)
			continue
		}
		v := "no"
		if b.Verification != nil && b.Verification.OK {
			v = ago(now.Sub(b.Verification.VerifiedAt)) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s ago\t%s\t%s\t%s\t%s\t%d\n", name, state, ago(now.Sub(b.ExportedAt)),
			bytesHuman(b.StoredBytes), clean(format(b.Compression, b.Encrypted)), v, clean(b.Method), s.Backups)
	}
	tw.Flush()
	var parts []string
	for _, st := range []backup.State{backup.StateOK, backup.StateStale, backup.StateFailed, backup.StateNever} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	summary := count(total, "database", "databases")
	if len(parts) > 0 {
		summary += ": " + strings.Join(parts, ", ")
	}
	fmt.Fprintf(e.stdout, "%s (stale after %dh, in %s)\n", summary, out.StaleAfterHours, clean(out.Destination))
	for _, n := range notes {
		fmt.Fprintln(e.stdout, "  "+n)
	}
}
