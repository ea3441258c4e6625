package main

import (
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
)

func newListCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--database <uuid|name>]",
		Short: "List the backups in the destination",
		Args:  cobra.NoArgs,
	}
	d := destFlag(cmd, "where the backups are")
	database := cmd.Flags().String("database", "", "only this database (UUID or name)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd, e)
		if err != nil {
			return err
		}
		st, err := cfg.OpenDest(*d, http.DefaultClient)
		if err != nil {
			return err
		}
		prefix := ""
		if isUUID(*database) {
			prefix = backup.DatabasePrefix(strings.ToLower(*database))
		}
		ms, skipped, err := backup.ListManifests(cmd.Context(), st, prefix)
		if err != nil {
			return err
		}
		for _, s := range skipped {
			fmt.Fprintf(e.stderr, "warning: skipped %s: %s\n", s.Key, s.Reason)
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
	return cmd
}
