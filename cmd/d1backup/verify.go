package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/d1backup/d1backup/internal/restore"
)

const verifySynopsis = `verify <key | r2://<bucket>/<key> | path> [--dest ...] [--json]

Checks a backup without touching any database: the stored object's and the
SQL's size and SHA-256 against the manifest, then loads the SQL into a
scratch SQLite database and runs PRAGMA integrity_check and
foreign_key_check. The SQL is loaded as data: a statement that is not one a
D1 dump holds (ATTACH, VACUUM, other PRAGMAs, queries, ...) fails the check.
Prints per-table row counts, the schema hash and how many rows are over
D1's 100 KB statement limit (restore splits them). Exits non-zero on any
problem.`

func cmdVerify(ctx context.Context, args []string, e env) error {
	fs := newFlags(e, "verify", verifySynopsis)
	dest := fs.String("dest", "", "where the backups are, for a key (default: R2_BUCKET if set, else ./d1-backups)")
	identity := fs.String("identity", "", "age identity file (AGE-SECRET-KEY-1...) for an encrypted backup")
	tempDir := fs.String("temp-dir", "", "folder for the SQL and the scratch database (default: the system's)")
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	pos, err := parseInterleaved(fs, args, e)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"give one backup: a key as 'd1backup list' shows it, r2://<bucket>/<key>, or a local path"}
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	src, err := openSource(cfg, pos[0], *dest)
	if err != nil {
		return err
	}
	ids, err := readIdentities(*identity)
	if err != nil {
		return err
	}
	rep, err := restore.Verify(ctx, src, restore.Options{TempDir: *tempDir, Identities: ids})
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
		fmt.Fprintf(out, "rows over 100 KB: %d (restoring into D1 splits each into statements under its limit)\n", r.SplitRows)
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

// parseInterleaved parses flags that may come before or after positional
// arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string, e env) ([]string, error) {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return nil, flag.ErrHelp
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
