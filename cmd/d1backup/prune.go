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
	"github.com/d1backup/d1backup/internal/retention"
	"github.com/d1backup/d1backup/internal/store"
)

const pruneLong = `Applies a retention policy to each database's backups: keep the last N, plus
the newest backup of each of the last D days, W ISO weeks and M months. The
newest verified (else newest good) backup is always kept, and nothing is
deleted while no good backup exists. --dry-run prints what would be deleted
and the rule that keeps each survivor, and changes nothing; without a
policy it lists every backup as kept.`

func newPruneCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "prune [--keep-last N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--dry-run]",
		Short:   "Apply a retention policy to the backups in the destination",
		Long:    pruneLong,
		Example: "  d1backup prune --keep-last 7 --keep-daily 14 --keep-monthly 12 --dry-run\n  d1backup prune --database shop --keep-daily 30 --json",
		Args:    noArgs,
	}
	d := destFlag(cmd, "of the backups")
	database := cmd.Flags().String("database", "", "only this database, by `uuid|name` (default: every database in the destination)")
	dryRun := cmd.Flags().Bool("dry-run", false, "only say what would be deleted and what keeps each survivor")
	asJSON := jsonFlag(cmd)
	config.BindFlags(cmd.Flags(), config.SettingKeepLast, config.SettingKeepDaily, config.SettingKeepWeekly, config.SettingKeepMonthly, config.SettingTimeZone)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return prune(cmd, e, *d, *database, *dryRun, *asJSON)
	}
	return cmd
}

// pruneJSON is `prune --json`.
type pruneJSON struct {
	DryRun    bool                `json:"dry_run"`
	Databases []pruneDatabaseJSON `json:"databases"`
	Kept      int                 `json:"kept"`
	Deleted   int                 `json:"deleted"`
}

type pruneDatabaseJSON struct {
	DatabaseID   string            `json:"database_id"`
	DatabaseName string            `json:"database_name"`
	Kept         int               `json:"kept"`
	Deleted      int               `json:"deleted"`
	Backups      []pruneBackupJSON `json:"backups"`
	// Cleaned are what interrupted backups left behind (stale checkpoints,
	// uploads never completed): removed, or with dry_run to be removed.
	Cleaned []string `json:"cleaned"`
}

type pruneBackupJSON struct {
	ID  string `json:"id"`
	Key string `json:"key"`
	// Action is keep or delete (with dry_run: would be deleted).
	Action     string    `json:"action"`
	ExportedAt time.Time `json:"exported_at"`
	Reasons    []string  `json:"reasons"`
}

func prune(cmd *cobra.Command, e env, d, database string, dryRun, asJSON bool) error {
	ctx := cmd.Context()
	cfg, err := loadConfig(cmd, e)
	if err != nil {
		return err
	}
	p := cfg.Retention
	if !p.Enabled() {
		if !dryRun {
			return usagef("no retention policy: give --keep-last/--keep-daily/--keep-weekly/--keep-monthly or set D1BACKUP_KEEP_* (--dry-run lists the backups)")
		}
		fmt.Fprintln(e.stderr, "no retention policy: every backup is kept")
	}
	st, err := cfg.OpenDest(d, http.DefaultClient)
	if err != nil {
		return err
	}
	dbs, err := databasesIn(ctx, cfg, st, database)
	if err != nil {
		return err
	}
	out := pruneJSON{DryRun: dryRun, Databases: []pruneDatabaseJSON{}}
	for _, db := range dbs {
		res, err := backup.Prune(ctx, st, db.DatabaseID, p, time.Now(), dryRun)
		if err != nil {
			return err
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(e.stderr, "warning: %s\n", clean(w))
		}
		pd := pruneDatabaseJSON{DatabaseID: db.DatabaseID, DatabaseName: db.DatabaseName, Kept: res.Kept, Deleted: res.Deleted, Backups: []pruneBackupJSON{}, Cleaned: append([]string{}, res.Cleaned...)}
		for _, dc := range res.Decisions {
			pd.Backups = append(pd.Backups, newPruneBackup(dc))
		}
		out.Kept += res.Kept
		out.Deleted += res.Deleted
		out.Databases = append(out.Databases, pd)
	}
	if asJSON {
		return printJSON(e.stdout, out)
	}
	printPrune(e, out)
	return nil
}

func newPruneBackup(dc retention.Decision) pruneBackupJSON {
	b := pruneBackupJSON{Key: dc.ID, Action: "keep", ExportedAt: dc.Time.UTC(), Reasons: dc.Reasons}
	if k, ok := backup.ParseKey(dc.ID); ok {
		b.ID = backup.ID(k.DatabaseID, k.Bookmark)
	}
	if !dc.Keep {
		b.Action = "delete"
	}
	if b.Reasons == nil {
		b.Reasons = []string{}
	}
	return b
}

func printPrune(e env, out pruneJSON) {
	tw := table(e.stdout)
	fmt.Fprintln(tw, "ACTION\tID\tDATABASE\tEXPORTED\tWHY")
	for _, db := range out.Databases {
		for _, b := range db.Backups {
			action := b.Action
			if action == "delete" && out.DryRun {
				action = "would delete"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", action, b.ID, truncate(clean(db.DatabaseName), 28), timestamp(b.ExportedAt), clean(strings.Join(b.Reasons, "; ")))
		}
	}
	tw.Flush()
	for _, db := range out.Databases {
		for _, c := range db.Cleaned {
			verb := "cleaned"
			if out.DryRun {
				verb = "would clean"
			}
			fmt.Fprintf(e.stdout, "%s %s\n", verb, clean(c))
		}
	}
	deleted := fmt.Sprintf("%d deleted", out.Deleted)
	if out.DryRun {
		deleted = fmt.Sprintf("%d would be deleted", out.Deleted)
	}
	fmt.Fprintf(e.stdout, "%s kept, %s\n", count(out.Kept, "backup", "backups"), deleted)
}

// databasesIn returns the databases with backups in st, or the one named
// (a name is looked up in each database's newest manifests, so no D1
// access is needed).
func databasesIn(ctx context.Context, cfg config.Config, st store.Store, database string) ([]backup.Target, error) {
	statuses, err := backup.Status(ctx, st, backup.StatusOptions{Now: time.Now(), StaleAfter: time.Duration(1<<63 - 1), Concurrency: cfg.Concurrency})
	if err != nil {
		return nil, err
	}
	var out []backup.Target
	for _, s := range statuses {
		if database == "" || s.DatabaseName == database || s.DatabaseID == strings.ToLower(database) {
			out = append(out, backup.Target{DatabaseID: s.DatabaseID, DatabaseName: s.DatabaseName})
		}
	}
	if database != "" && len(out) == 0 {
		return nil, fmt.Errorf("no backups of a database %q in %s", clean(database), clean(st.String()))
	}
	return out, nil
}
