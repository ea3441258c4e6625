package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/store"
)

const listLong = `Lists the backups in the destination, oldest first within each database. The
ID names a backup for verify and restore. VERIFIED is yes once a
verification (d1backup verify, or the workflow's verify step) succeeded,
FAILED when one failed. --long adds UUIDs, bookmarks, times and keys.
Dumps without a manifest (unfinished backups) and objects that are not
d1backup manifests are reported on stderr. Nothing is written.`

func newListCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list [--database <uuid|name>]",
		Short:   "List the backups in the destination",
		Long:    listLong,
		Example: "  d1backup list\n  d1backup list --database shop --long\n  d1backup list --dest r2://backups/prod --json",
		Args:    noArgs,
	}
	d := destFlag(cmd, "of the backups")
	database := cmd.Flags().String("database", "", "only this database, by `uuid|name`")
	long := cmd.Flags().Bool("long", false, "show UUIDs, bookmarks, times and keys (wide)")
	last := cmd.Flags().Int("last", 0, "only the newest `N` backups of each database (0: all); reads fewer manifests")
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *last < 0 {
			return usagef("--last must not be negative")
		}
		cfg, st, err := configAndDest(cmd, e, *d)
		if err != nil {
			return err
		}
		l, err := listBackups(cmd.Context(), cfg, st, *database, *last)
		if err != nil {
			return err
		}
		for _, s := range l.Skipped {
			fmt.Fprintf(e.stderr, "warning: skipped %s: %s\n", clean(s.Key), clean(s.Reason))
		}
		for _, u := range l.Unfinished {
			fmt.Fprintf(e.stderr, "warning: %s has no manifest: an unfinished backup (prune removes it once a day old)\n", clean(u.Key))
		}
		if *asJSON {
			return printJSON(e.stdout, l)
		}
		if len(l.Backups) == 0 {
			fmt.Fprintf(e.stderr, "no backups in %s\n", clean(st.String()))
			return nil
		}
		if *long {
			printListLong(e, l.Backups)
		} else {
			printList(e, l.Backups, time.Now())
		}
		return nil
	}
	return cmd
}

// listJSON is `list --json`.
type listJSON struct {
	Backups    []backupJSON     `json:"backups"`
	Unfinished []unfinishedJSON `json:"unfinished"`
	Skipped    []backup.Skipped `json:"skipped"`
}

// backupJSON is one backup as list and status show it.
type backupJSON struct {
	ID              string               `json:"id"`
	DatabaseID      string               `json:"database_id"`
	DatabaseName    string               `json:"database_name"`
	Bookmark        string               `json:"bookmark"`
	Key             string               `json:"key"`
	ManifestKey     string               `json:"manifest_key"`
	Method          string               `json:"method"`
	ExportStartedAt time.Time            `json:"export_started_at"`
	ExportedAt      time.Time            `json:"exported_at"`
	BlockedSeconds  float64              `json:"blocked_seconds"`
	SQLBytes        int64                `json:"sql_bytes"`
	SQLSHA256       string               `json:"sql_sha256"`
	StoredBytes     int64                `json:"stored_bytes"`
	StoredSHA256    string               `json:"stored_sha256"`
	Compression     string               `json:"compression"`
	Encrypted       bool                 `json:"encrypted"`
	Verification    *backup.Verification `json:"verification"`
}

type unfinishedJSON struct {
	ID         string    `json:"id"`
	DatabaseID string    `json:"database_id"`
	Key        string    `json:"key"`
	Bytes      int64     `json:"bytes"`
	Modified   time.Time `json:"modified"`
}

func newBackupJSON(m *backup.Manifest) backupJSON {
	return backupJSON{
		ID: backup.ID(m.DatabaseID, m.Bookmark), DatabaseID: m.DatabaseID, DatabaseName: m.DatabaseName, Bookmark: m.Bookmark,
		Key: m.Key, ManifestKey: m.Key + backup.ManifestSuffix, Method: backup.Method(m),
		ExportStartedAt: m.ExportStartedAt, ExportedAt: backup.ExportedAt(m), BlockedSeconds: m.BlockedSeconds,
		SQLBytes: m.SQLBytes, SQLSHA256: m.SQLSHA256, StoredBytes: m.StoredBytes, StoredSHA256: m.StoredSHA256,
		Compression: m.Compression, Encrypted: m.Encryption != nil, Verification: m.Verification,
	}
}

// listBackups reads the manifests of the backups in st (of one database
// when database is set: a name is found through each database's newest
// manifest, so only that database's manifests are read in full; the newest
// last of each database when last > 0).
func listBackups(ctx context.Context, cfg config.Config, st store.Store, database string, last int) (listJSON, error) {
	l := listJSON{Backups: []backupJSON{}, Unfinished: []unfinishedJSON{}, Skipped: []backup.Skipped{}}
	var shelves []backup.Shelf
	switch {
	case database == "" || isUUID(database):
		prefix := ""
		if database != "" {
			prefix = backup.DatabasePrefix(strings.ToLower(database))
		}
		var err error
		if shelves, err = backup.Catalog(ctx, st, prefix); err != nil {
			return l, err
		}
	default:
		statuses, err := backup.Status(ctx, st, backup.StatusOptions{Now: time.Now(), StaleAfter: time.Duration(1<<63 - 1), Concurrency: cfg.Concurrency})
		if err != nil {
			return l, err
		}
		for _, s := range statuses {
			if s.DatabaseName != database {
				continue
			}
			sh, err := backup.Catalog(ctx, st, backup.DatabasePrefix(s.DatabaseID))
			if err != nil {
				return l, err
			}
			shelves = append(shelves, sh...)
		}
	}
	var entries []backup.Entry
	for _, s := range shelves {
		bs := s.Backups
		if last > 0 && len(bs) > last {
			bs = bs[len(bs)-last:]
		}
		entries = append(entries, bs...)
	}
	ms, errs := backup.ReadManifests(ctx, st, entries, cfg.Concurrency)
	if err := ctx.Err(); err != nil {
		return l, err
	}
	for i, e := range entries {
		switch {
		case e.Manifest == nil:
			u := unfinishedJSON{ID: e.ID, DatabaseID: e.Key.DatabaseID, Key: e.Key.Dump}
			if e.Dump != nil {
				u.Bytes, u.Modified = e.Dump.Size, e.Dump.Modified
			}
			l.Unfinished = append(l.Unfinished, u)
		case errs[i] != nil:
			var bad *backup.BadManifestError
			if !errors.As(errs[i], &bad) && !errors.Is(errs[i], store.ErrNotFound) {
				return l, fmt.Errorf("list backups in %s: %w", st, errs[i])
			}
			l.Skipped = append(l.Skipped, backup.Skipped{Key: e.ManifestKey(), Reason: message(errs[i])})
		case database != "" && !isUUID(database) && ms[i].DatabaseName != database:
		default:
			l.Backups = append(l.Backups, newBackupJSON(ms[i]))
		}
	}
	sort.SliceStable(l.Backups, func(i, j int) bool { return l.Backups[i].DatabaseName < l.Backups[j].DatabaseName })
	return l, nil
}

// verified says whether a backup was verified: yes, no or FAILED, and
// when (for --long).
func verified(v *backup.Verification, long bool) string {
	switch {
	case v == nil:
		return "no"
	case !v.OK && long:
		return "FAILED " + timestamp(v.VerifiedAt)
	case !v.OK:
		return "FAILED"
	case long:
		return timestamp(v.VerifiedAt)
	}
	return "yes"
}

func printList(e env, bs []backupJSON, now time.Time) {
	tw := table(e.stdout)
	fmt.Fprintln(tw, "ID\tDATABASE\tAGE\tSQL\tSTORED\tVERIFIED")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, truncate(clean(b.DatabaseName), 28), ago(now.Sub(b.ExportedAt)),
			bytesHuman(b.SQLBytes), bytesHuman(b.StoredBytes)+" "+clean(format(b.Compression, b.Encrypted)), verified(b.Verification, false))
	}
	tw.Flush()
}

func printListLong(e env, bs []backupJSON) {
	tw := table(e.stdout)
	fmt.Fprintln(tw, "ID\tDATABASE\tUUID\tBOOKMARK\tEXPORTED\tBLOCKED\tSQL\tSTORED\tVERIFIED\tKEY")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, clean(b.DatabaseName), b.DatabaseID, b.Bookmark,
			timestamp(b.ExportedAt), elapsed(secs(b.BlockedSeconds)), bytesHuman(b.SQLBytes),
			bytesHuman(b.StoredBytes)+" "+clean(format(b.Compression, b.Encrypted)), verified(b.Verification, true), clean(b.Key))
	}
	tw.Flush()
}
