package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/restore"
)

const verifyLong = `Checks a backup without touching any database: the stored object's and the
SQL's size and SHA-256 against the manifest, then loads the SQL into a
scratch SQLite database and runs PRAGMA integrity_check and
foreign_key_check. Prints per-table row counts and the schema hash. Exits
non-zero on any problem.`

func newVerifyCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify <key | r2://<bucket>/<key> | path>",
		Short: "Prove a backup restores, without touching any database",
		Long:  verifyLong,
		Args:  exactArgs(1, "give one backup: a key as 'd1backup list' shows it, r2://<bucket>/<key>, or a local path"),
	}
	d := destFlag(cmd, "where the backups are, for a key")
	identity := cmd.Flags().String("identity", "", "age identity file (AGE-SECRET-KEY-1...) for an encrypted backup")
	tempDir := cmd.Flags().String("temp-dir", "", "folder for the SQL and the scratch database (default: the system's)")
	asJSON := cmd.Flags().Bool("json", false, "print the report as JSON on stdout")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfig(cmd, e)
		if err != nil {
			return err
		}
		src, err := openSource(cfg, args[0], *d)
		if err != nil {
			return err
		}
		ids, err := readIdentities(*identity)
		if err != nil {
			return err
		}
		rep, err := restore.Verify(cmd.Context(), src, restore.Options{TempDir: *tempDir, Identities: ids})
		if rep == nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(rep); jerr != nil {
				return jerr
			}
			return err
		}
		printReport(e, rep)
		return err
	}
	return cmd
}

// exactArgs wants n positional arguments, else a usage error saying msg.
func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{msg}
		}
		return nil
	}
}

func printReport(e env, r *restore.Report) {
	out := e.stdout
	fmt.Fprintf(out, "backup   %s\n", r.Key)
	if r.DatabaseID != "" {
		fmt.Fprintf(out, "database %s (%s) at bookmark %s\n", r.DatabaseName, r.DatabaseID, r.Bookmark)
		fmt.Fprintf(out, "stored   %s (%s), sha256 %s\n", bytesHuman(r.StoredBytes), r.Compression, r.StoredSHA256)
		fmt.Fprintf(out, "SQL      %s in %d statements, sha256 %s\n", bytesHuman(r.SQLBytes), r.Statements, r.SQLSHA256)
	}
	fmt.Fprintln(out, "checks:")
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		line := "  " + mark + "  " + c.Name
		if c.Detail != "" && (!c.OK || c.Name == restore.CheckLoad) {
			line += ": " + c.Detail
		}
		fmt.Fprintln(out, line)
	}
	if len(r.Tables) > 0 {
		fmt.Fprintln(out, "tables:")
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, t := range r.Tables {
			fmt.Fprintf(tw, "  %s\t%d rows\n", t.Name, t.Rows)
		}
		tw.Flush()
	}
	if r.SchemaSHA256 != "" {
		fmt.Fprintf(out, "schema   sha256 %s\n", r.SchemaSHA256)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	if r.OK {
		fmt.Fprintln(out, "verified: the backup restores")
	} else {
		fmt.Fprintln(out, "NOT VERIFIED")
	}
}
