package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/restore"
	"github.com/d1backup/d1backup/internal/store/local"
)

const restoreSynopsis = `restore --from <key | r2://<bucket>/<key> | path> (--create <name> | --database <uuid|name> [--force] | --to-sqlite <file> [--force]) [flags]

Checks the backup against its manifest (SHA-256 of the stored object and of
the SQL) before touching any database, then imports it through D1's import
API, or loads it into a local SQLite file. --create makes a new database for
the restore (the safe choice: D1 Time Travel only restores in place).
--from takes a key as 'd1backup list' shows it (relative to --dest), the
manifest's key, r2://<bucket>/<key>, or the path of a local .sql/.sql.gz/.sql.zst
with its .manifest.json beside it.`

func cmdRestore(ctx context.Context, args []string, e env) error {
	fs := newFlags(e, "restore", restoreSynopsis)
	from := fs.String("from", "", "the backup to restore (required)")
	dest := fs.String("dest", "", "where the backups are, for a --from key (default: R2_BUCKET if set, else ./d1-backups)")
	database := fs.String("database", "", "restore into this existing database (UUID or name); it must have no tables unless --force")
	create := fs.String("create", "", "create a new database with this name and restore into it")
	toSQLite := fs.String("to-sqlite", "", "restore into this local SQLite file instead of D1")
	force := fs.Bool("force", false, "import into a --database that has tables, or replace a non-empty --to-sqlite file")
	poll := fs.Duration("poll-interval", time.Second, "wait between import polls")
	identity := fs.String("identity", "", "age identity file (AGE-SECRET-KEY-1...) for an encrypted backup")
	tempDir := fs.String("temp-dir", "", "folder for the uncompressed SQL while it is checked (default: the system's)")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	verbose := fs.Bool("verbose", false, "log every step")
	if err := parse(fs, args, e); err != nil {
		return err
	}
	if *from == "" {
		return usageError{"--from is required: a backup key as 'd1backup list' shows it, r2://<bucket>/<key>, or a local path"}
	}
	n := 0
	for _, s := range []string{*database, *create, *toSQLite} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usageError{"give exactly one target: --create <name> (a new database), --database <uuid|name> (an existing, empty one) or --to-sqlite <file>"}
	}
	if *force && *create != "" {
		return usageError{"--force does not apply to --create: a new database is always empty"}
	}
	if *poll <= 0 {
		return usageError{"--poll-interval must be positive"}
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	src, err := openSource(cfg, *from, *dest)
	if err != nil {
		return err
	}
	log := newLogger(e, *verbose)
	ids, err := readIdentities(*identity)
	if err != nil {
		return err
	}
	opts := restore.Options{TempDir: *tempDir, PollInterval: *poll, Logger: log, Identities: ids}
	var res restore.Result
	if *toSQLite != "" {
		res, err = restore.ToSQLite(ctx, src, *toSQLite, *force, opts)
	} else {
		api, aerr := cfg.D1Client(http.DefaultClient)
		if aerr != nil {
			return aerr
		}
		target := *database
		if target == "" {
			target = "new database " + *create
		}
		fmt.Fprintf(e.stderr, "d1backup: restoring %s into %s; D1 answers no queries to the database while the import runs\n", src.Key, target)
		res, err = restore.ToD1(ctx, api, src, restore.Target{Database: *database, Create: *create, Force: *force}, opts)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(e.stdout, "restored %s\n  from %s (%s) at bookmark %s; SQL %s, sha256 %s (checked)\n",
		res.Key, res.FromDatabaseName, res.FromDatabaseID, res.FromBookmark, bytesHuman(res.SQLBytes), res.SQLSHA256)
	if res.SQLitePath != "" {
		fmt.Fprintf(e.stdout, "  into %s: %d statements, %d rows written\n", res.SQLitePath, res.NumQueries, res.RowsWritten)
		return nil
	}
	what := "database"
	if res.Created {
		what = "new database"
	}
	fmt.Fprintf(e.stdout, "  into %s %s (%s): %d queries, %d rows written\n  final bookmark %s (a Time Travel restore point right after the import)\n",
		what, res.DatabaseName, res.DatabaseID, res.NumQueries, res.RowsWritten, res.FinalBookmark)
	if res.SplitRows > 0 {
		fmt.Fprintf(e.stdout, "  %d row(s) over D1's 100 KB statement limit went in as an INSERT and UPDATEs under it\n", res.SplitRows)
	}
	return nil
}

// openSource resolves --from: r2://bucket/key, a local file, or a key in the
// destination.
func openSource(cfg config.Config, from, dest string) (restore.Source, error) {
	if strings.Contains(from, "://") {
		u, err := url.Parse(from)
		if err != nil || (u.Scheme != "r2" && u.Scheme != "s3") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return restore.Source{}, usageError{fmt.Sprintf("--from %q: use r2://<bucket>/<key>, a key, or a local path", from)}
		}
		st, err := cfg.R2Store(u.Host, "", http.DefaultClient)
		if err != nil {
			return restore.Source{}, err
		}
		return restore.Source{Store: st, Key: strings.TrimPrefix(u.Path, "/")}, nil
	}
	if fi, err := os.Stat(from); err == nil && fi.Mode().IsRegular() {
		abs, err := filepath.Abs(from)
		if err != nil {
			return restore.Source{}, err
		}
		st, err := local.New(filepath.Dir(abs))
		if err != nil {
			return restore.Source{}, err
		}
		return restore.Source{Store: st, Key: filepath.Base(abs)}, nil
	}
	st, err := cfg.OpenDest(dest, http.DefaultClient)
	if err != nil {
		return restore.Source{}, err
	}
	return restore.Source{Store: st, Key: strings.TrimPrefix(from, "/")}, nil
}

// readIdentities reads an age identity file; none when path is empty.
func readIdentities(path string) ([]age.Identity, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--identity: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("--identity %s: %w", path, err)
	}
	return ids, nil
}
