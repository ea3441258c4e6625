package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/restore"
)

const restoreLong = `Checks the backup against its manifest (SHA-256 of the stored object and of
the SQL) before touching any database, then imports it through D1's import
API, or loads it into a local SQLite file. --create makes a new database for
the restore (the safe choice: D1 Time Travel only restores in place). D1
answers no queries to the target database while the import runs.

` + refHelp

const restoreExample = `  d1backup restore 3fa85f64 --create shop-restored
  d1backup restore shop@latest --to-sqlite shop.sqlite
  d1backup restore shop@latest --database shop-staging --identity backup.key`

func newRestoreCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "restore <backup> (--create <name> | --database <uuid|name> | --to-sqlite <file>)",
		Short:   "Restore a backup into a new or empty D1 database, or a SQLite file",
		Long:    restoreLong,
		Example: restoreExample,
		Args:    cobra.MaximumNArgs(1),
	}
	f := cmd.Flags()
	from := f.String("from", "", "the `backup` to restore (the same as the argument)")
	d := destFlag(cmd, "of the backups")
	database := f.String("database", "", "restore into this existing database, by `uuid|name`; it must have no tables unless --force")
	create := f.String("create", "", "create a new database with this `name` and restore into it")
	toSQLite := f.String("to-sqlite", "", "restore into this local SQLite `file` instead of D1")
	force := f.Bool("force", false, "import into a --database that has tables, or replace a non-empty --to-sqlite file")
	poll := f.Duration("import-poll-interval", time.Second, "wait between import polls")
	identity := identityFlag(cmd)
	tempDir := f.String("temp-dir", "", "`folder` for the uncompressed SQL while it is checked (default: the system's)")
	asJSON := jsonFlag(cmd)
	verbose := f.Bool("verbose", false, "log every step")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ref := *from
		switch {
		case len(args) == 1 && ref != "":
			return usagef("give the backup once: as the argument or with --from")
		case len(args) == 1:
			ref = args[0]
		case ref == "":
			return usagef("which backup? give an ID from 'd1backup list', <database>@latest, a key, r2://<bucket>/<key> or a file")
		}
		n := 0
		for _, s := range []string{*database, *create, *toSQLite} {
			if s != "" {
				n++
			}
		}
		switch {
		case n != 1:
			return usagef("give exactly one target: --create <name> (a new database), --database <uuid|name> (an existing, empty one) or --to-sqlite <file>")
		case *force && *create != "":
			return usagef("--force does not apply to --create: a new database is always empty")
		case *poll <= 0:
			return usagef("--import-poll-interval must be positive")
		}
		ctx := cmd.Context()
		cfg, err := loadConfig(cmd, e)
		if err != nil {
			return err
		}
		ids, err := readIdentities(*identity)
		if err != nil {
			return err
		}
		src, err := openSource(ctx, cfg, ref, *d)
		if err != nil {
			return err
		}
		opts := restore.Options{TempDir: *tempDir, PollInterval: *poll, Logger: newLogger(e.stderr, *verbose), Identities: ids}
		var res restore.Result
		if *toSQLite != "" {
			res, err = restore.ToSQLite(ctx, src, *toSQLite, *force, opts)
		} else {
			api, aerr := cfg.D1Client(http.DefaultClient)
			if aerr != nil {
				return aerr
			}
			res, err = restore.ToD1(ctx, api, src, restore.Target{Database: *database, Create: *create, Force: *force}, opts)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, res)
		}
		printRestore(e, res)
		return nil
	}
	return cmd
}

func printRestore(e env, res restore.Result) {
	into := clean(res.SQLitePath)
	if res.SQLitePath == "" {
		into = fmt.Sprintf("database %s (%s)", clean(res.DatabaseName), res.DatabaseID)
		if res.Created {
			into = "new " + into
		}
	}
	fmt.Fprintf(e.stdout, "restored backup %s of %s into %s\n", backup.ID(res.FromDatabaseID, res.FromBookmark), clean(res.FromDatabaseName), into)
	fmt.Fprintf(e.stdout, "  %s, %s written\n", count(int(res.NumQueries), "statement", "statements"), count(int(res.RowsWritten), "row", "rows"))
	if res.FinalBookmark != "" {
		fmt.Fprintf(e.stdout, "  final bookmark %s (a Time Travel restore point right after the import)\n", res.FinalBookmark)
	}
	if res.SplitRows > 0 {
		fmt.Fprintf(e.stdout, "  %s over D1's 100 KB statement limit went in as an INSERT and UPDATEs under it\n", count(int(res.SplitRows), "row", "rows"))
	}
	fmt.Fprintf(e.stdout, "  from %s\n  SQL %s, sha256 %s (checked against the manifest)\n",
		clean(res.Key), bytesHuman(res.SQLBytes), res.SQLSHA256)
}
