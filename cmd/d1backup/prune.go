package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/store"
)

func cmdPrune(ctx context.Context, args []string, e env) error {
	fs := newFlags(e, "prune", "prune [--dest ...] [--database <uuid|name>] [--keep-last N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--dry-run]")
	dest := fs.String("dest", "", "where the backups are (default: R2_BUCKET if set, else ./d1-backups)")
	database := fs.String("database", "", "only this database (UUID or name); default every database in the destination")
	last := fs.Int("keep-last", -1, "keep the newest N backups (default D1BACKUP_KEEP_LAST)")
	daily := fs.Int("keep-daily", -1, "keep the newest backup of each of the last N days (default D1BACKUP_KEEP_DAILY)")
	weekly := fs.Int("keep-weekly", -1, "keep the newest backup of each of the last N ISO weeks (default D1BACKUP_KEEP_WEEKLY)")
	monthly := fs.Int("keep-monthly", -1, "keep the newest backup of each of the last N months (default D1BACKUP_KEEP_MONTHLY)")
	dryRun := fs.Bool("dry-run", false, "only say what would be deleted and what keeps each survivor")
	if err := parse(fs, args, e); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	p := cfg.Retention
	for _, o := range []struct{ flag, dst *int }{{last, &p.KeepLast}, {daily, &p.KeepDaily}, {weekly, &p.KeepWeekly}, {monthly, &p.KeepMonthly}} {
		if *o.flag >= 0 {
			*o.dst = *o.flag
		}
	}
	if err := p.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if !p.Enabled() {
		return usageError{"no retention policy: give --keep-last/--keep-daily/--keep-weekly/--keep-monthly or set D1BACKUP_KEEP_*"}
	}
	st, err := cfg.OpenDest(*dest, http.DefaultClient)
	if err != nil {
		return err
	}
	ids, err := databasesIn(ctx, st, *database)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tEXPORTED\tKEY\tWHY")
	var kept, deleted int
	for _, id := range ids {
		res, err := backup.Prune(ctx, st, id, p, time.Now(), *dryRun)
		if err != nil {
			tw.Flush()
			return err
		}
		kept += res.Kept
		deleted += res.Deleted
		for _, d := range res.Decisions {
			action := "keep"
			if !d.Keep {
				action = "delete"
				if *dryRun {
					action = "would delete"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", action, d.Time.UTC().Format("2006-01-02 15:04Z"), d.ID, strings.Join(d.Reasons, "; "))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verb := "deleted"
	if *dryRun {
		verb = "would delete"
	}
	fmt.Fprintf(e.stdout, "%d backups kept, %d %s\n", kept, deleted, verb)
	return nil
}

// databasesIn returns the database UUIDs with backups in st, or the one
// named (a name is looked up in the manifests, so no D1 access is needed).
func databasesIn(ctx context.Context, st store.Store, database string) ([]string, error) {
	if isUUID(database) {
		return []string{strings.ToLower(database)}, nil
	}
	ms, err := backup.ListManifests(ctx, st, "")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if database == "" || m.DatabaseName == database {
			seen[m.DatabaseID] = true
		}
	}
	if database != "" && len(seen) == 0 {
		return nil, fmt.Errorf("no backups of a database named %q in %s", database, st)
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}
