package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/store"
)

func newPruneCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prune [--keep-last N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--dry-run]",
		Short: "Apply a retention policy to the backups in the destination",
		Args:  cobra.NoArgs,
	}
	d := destFlag(cmd, "where the backups are")
	database := cmd.Flags().String("database", "", "only this database (UUID or name); default every database in the destination")
	dryRun := cmd.Flags().Bool("dry-run", false, "only say what would be deleted and what keeps each survivor")
	config.BindFlags(cmd.Flags(), config.SettingKeepLast, config.SettingKeepDaily, config.SettingKeepWeekly, config.SettingKeepMonthly, config.SettingTimeZone)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return prune(cmd, e, *d, *database, *dryRun)
	}
	return cmd
}

func prune(cmd *cobra.Command, e env, d, database string, dryRun bool) error {
	ctx := cmd.Context()
	cfg, err := loadConfig(cmd, e)
	if err != nil {
		return err
	}
	p := cfg.Retention
	if !p.Enabled() {
		return usageError{"no retention policy: give --keep-last/--keep-daily/--keep-weekly/--keep-monthly or set D1BACKUP_KEEP_*"}
	}
	st, err := cfg.OpenDest(d, http.DefaultClient)
	if err != nil {
		return err
	}
	ids, err := databasesIn(ctx, st, database)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tEXPORTED\tKEY\tWHY")
	var kept, deleted int
	for _, id := range ids {
		res, err := backup.Prune(ctx, st, id, p, time.Now(), dryRun)
		if err != nil {
			tw.Flush()
			return err
		}
		kept += res.Kept
		deleted += res.Deleted
		for _, w := range res.Warnings {
			fmt.Fprintf(e.stderr, "warning: %s\n", w)
		}
		for _, d := range res.Decisions {
			action := "keep"
			if !d.Keep {
				action = "delete"
				if dryRun {
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
	if dryRun {
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
	ms, _, err := backup.ListManifests(ctx, st, "")
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
