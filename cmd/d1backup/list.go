package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/d1backup/d1backup/internal/backup"
)

func cmdList(ctx context.Context, args []string, e env) error {
	fs := newFlags(e, "list", "list [--dest <dir>|r2://<bucket>/<prefix>] [--database <uuid|name>]")
	dest := fs.String("dest", "", "where the backups are (default: R2_BUCKET if set, else ./d1-backups)")
	database := fs.String("database", "", "only this database (UUID or name)")
	if err := parse(fs, args, e); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	st, err := cfg.OpenDest(*dest, http.DefaultClient)
	if err != nil {
		return err
	}
	prefix := ""
	if isUUID(*database) {
		prefix = backup.DatabasePrefix(strings.ToLower(*database))
	}
	ms, err := backup.ListManifests(ctx, st, prefix)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tUUID\tBOOKMARK\tEXPORTED\tSQL\tSTORED\tKEY")
	n := 0
	for _, m := range ms {
		if *database != "" && prefix == "" && m.DatabaseName != *database {
			continue
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.DatabaseName, m.DatabaseID, m.Bookmark,
			m.ExportCompletedAt.UTC().Format("2006-01-02 15:04:05Z"), bytesHuman(m.SQLBytes), bytesHuman(m.StoredBytes), m.Key)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(e.stderr, "no backups in %s\n", st)
	}
	return nil
}
