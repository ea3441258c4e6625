package main

import (
	"fmt"
	"os"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/restore"
)

const verifyLong = `Checks a backup without touching any database: the stored object's and the
SQL's size and SHA-256 against the manifest, then loads the SQL into a
scratch SQLite database and runs PRAGMA integrity_check and
foreign_key_check. The SQL is loaded as data: a statement that is not one a
D1 dump holds (ATTACH, VACUUM, other PRAGMAs, queries, ...) fails the check.
Prints per-table row counts, the schema hash and how many rows are over D1's
100 KB statement limit (restore splits them), and
records the result in the backup's manifest (as the workflow's verify step
does), so retention's "newest verified" guard, 'list' and 'status' see it.
A destination you may only read still gets its report: the record is then
skipped with a warning (or on purpose with --no-record). Exit status 1 when
a check fails.

` + refHelp

func newVerifyCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "verify <backup>",
		Short:   "Prove a backup restores, without touching any database",
		Long:    verifyLong,
		Example: "  d1backup verify 3fa85f64\n  d1backup verify shop@latest --identity backup.key\n  d1backup verify r2://backups/prod/<uuid>/<bookmark>.sql.gz --json",
		Args:    exactArgs(1, "give one backup: an ID from 'd1backup list', <database>@latest, a key, r2://<bucket>/<key> or a file"),
	}
	d := destFlag(cmd, "of the backups")
	identity := identityFlag(cmd)
	tempDir := cmd.Flags().String("temp-dir", "", "`folder` for the SQL and the scratch database (default: the system's)")
	noRecord := cmd.Flags().Bool("no-record", false, "do not record the result in the backup's manifest")
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		cfg, err := loadConfig(cmd, e)
		if err != nil {
			return err
		}
		ids, err := readIdentities(*identity)
		if err != nil {
			return err
		}
		src, err := openSource(ctx, cfg, args[0], *d)
		if err != nil {
			return err
		}
		rep, verr := restore.Verify(ctx, src, restore.Options{TempDir: *tempDir, Identities: ids})
		if rep == nil {
			return verr
		}
		out := verifyJSON{Report: rep}
		if !*noRecord {
			var rerr error
			out.Recorded, rerr = restore.Record(ctx, src, rep, verr, time.Now())
			if rerr != nil {
				out.Recorded, out.RecordError = false, message(rerr)
			}
		}
		if *asJSON {
			if err := printJSON(e.stdout, out); err != nil {
				return err
			}
		} else {
			printReport(e, rep)
			if out.Recorded {
				fmt.Fprintln(e.stdout, "recorded in the manifest")
			}
		}
		if out.RecordError != "" {
			fmt.Fprintf(e.stderr, "warning: the result was not recorded in the manifest (%s); retention and status do not see it; --no-record skips recording\n", out.RecordError)
		}
		if verr != nil {
			return verr
		}
		return nil
	}
	return cmd
}

// verifyJSON is `verify --json`: the report, and whether it was recorded.
type verifyJSON struct {
	*restore.Report
	Recorded    bool   `json:"recorded"`
	RecordError string `json:"record_error,omitempty"`
}

func identityFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("identity", "", "age identity `file` (AGE-SECRET-KEY-1...) for an encrypted backup")
}

// readIdentities reads an age identity file; none when path is empty. A
// file that is missing or holds no identity is a mistake on the command
// line.
func readIdentities(path string) ([]age.Identity, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("--identity: %v", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, usagef("--identity %s: %v", path, err)
	}
	return ids, nil
}

func printReport(e env, r *restore.Report) {
	out := e.stdout
	if r.DatabaseID != "" {
		fmt.Fprintf(out, "backup   %s  %s\n", backup.ID(r.DatabaseID, r.Bookmark), clean(r.Key))
	} else {
		fmt.Fprintf(out, "backup   %s\n", clean(r.Key))
	}
	if r.DatabaseID != "" {
		fmt.Fprintf(out, "database %s (%s) at bookmark %s\n", clean(r.DatabaseName), r.DatabaseID, r.Bookmark)
		fmt.Fprintf(out, "stored   %s (%s), sha256 %s\n", bytesHuman(r.StoredBytes), clean(r.Compression), r.StoredSHA256)
		fmt.Fprintf(out, "SQL      %s in %s, sha256 %s\n", bytesHuman(r.SQLBytes), count(int(r.Statements), "statement", "statements"), r.SQLSHA256)
	}
	fmt.Fprintln(out, "checks:")
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		line := "  " + mark + "  " + c.Name
		if c.Detail != "" && (!c.OK || c.Name == restore.CheckLoad) {
			line += ": " + clean(c.Detail)
		}
		fmt.Fprintln(out, line)
	}
	if len(r.Tables) > 0 {
		fmt.Fprintln(out, "tables:")
		tw := table(out)
		for _, t := range r.Tables {
			fmt.Fprintf(tw, "  %s\t%s\n", clean(t.Name), count(int(t.Rows), "row", "rows"))
		}
		tw.Flush()
	}
	if r.SchemaSHA256 != "" {
		fmt.Fprintf(out, "schema   sha256 %s\n", r.SchemaSHA256)
		fmt.Fprintf(out, "rows over 100 KB: %d (restoring into D1 splits each into statements under its limit)\n", r.SplitRows)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(out, "warning: %s\n", clean(w))
	}
	if r.OK {
		fmt.Fprintln(out, "verified: the backup restores")
	} else {
		fmt.Fprintln(out, "NOT VERIFIED")
	}
}
