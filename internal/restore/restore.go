package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/d1"
)

// D1 is what restoring needs of the D1 API (implemented by *d1.Client).
type D1 interface {
	Resolve(ctx context.Context, uuidOrName string) (d1.Database, error)
	Get(ctx context.Context, databaseID string) (d1.Database, error)
	CreateDatabase(ctx context.Context, name string) (d1.Database, error)
	Import(ctx context.Context, databaseID string, f d1.ImportFile, opts d1.ImportOptions) (d1.ImportResult, error)
}

var _ D1 = (*d1.Client)(nil)

// Target is where ToD1 restores: exactly one of Database (an existing
// database's UUID or name) and Create (the name of a new database).
type Target struct {
	Database string
	Create   string
	// Force imports into a Database that already has tables.
	Force bool
}

// Options tune restores. The zero value is usable.
type Options struct {
	// TempDir holds the SQL while it is checked and uploaded, and the
	// scratch databases of verify and of rows rewritten for D1;
	// os.TempDir() if empty. It needs room for the uncompressed dump (at
	// most its manifest's sql_bytes), plus, while loading, the database
	// and, for a D1 restore with rows over 100 KB, a second copy of the
	// SQL.
	TempDir string
	// Identities decrypt age-encrypted backups.
	Identities []age.Identity
	// PollInterval is the wait between import polls (d1 default if 0).
	PollInterval time.Duration
	Logger       *slog.Logger
}

func (o Options) log() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Result describes a finished restore.
type Result struct {
	Key string `json:"key"`
	// From: the backed-up database and the export's bookmark.
	FromDatabaseID   string `json:"from_database_id"`
	FromDatabaseName string `json:"from_database_name"`
	FromBookmark     string `json:"from_bookmark"`
	SQLBytes         int64  `json:"sql_bytes"`
	SQLSHA256        string `json:"sql_sha256"`
	Statements       int64  `json:"statements"`
	// DatabaseID/DatabaseName: the D1 target; Created when made for the restore.
	DatabaseID   string `json:"database_id,omitempty"`
	DatabaseName string `json:"database_name,omitempty"`
	Created      bool   `json:"created,omitempty"`
	// SQLitePath: the SQLite target.
	SQLitePath string `json:"sqlite_path,omitempty"`
	// NumQueries, RowsWritten and FinalBookmark are D1's report (for a
	// SQLite target: statements run and rows changed).
	NumQueries    int64  `json:"num_queries"`
	RowsWritten   int64  `json:"rows_written"`
	FinalBookmark string `json:"final_bookmark,omitempty"`
	// SplitRows counts the rows whose INSERT was over D1's statement
	// limit and went to D1 as an INSERT and UPDATEs under it.
	SplitRows int64 `json:"split_rows,omitempty"`
}

func newResult(d *Dump) Result {
	return Result{
		Key: d.Key, FromDatabaseID: d.Manifest.DatabaseID, FromDatabaseName: d.Manifest.DatabaseName,
		FromBookmark: d.Manifest.Bookmark, SQLBytes: d.Size, SQLSHA256: d.SHA256, Statements: d.Statements,
	}
}

// ToD1 restores a backup into D1. In order, so that nothing is written
// before everything has been checked: resolve the target and refuse one
// with tables (unless Force) or a new name already taken; fetch the dump
// and check it against its manifest; check D1's import limits, rewriting
// rows whose INSERT is over D1's statement limit (which loads the dump
// into a scratch SQLite database first); create the new database; import
// (init, upload, ingest, poll).
func ToD1(ctx context.Context, api D1, src Source, t Target, opts Options) (Result, error) {
	log := opts.log()
	var target d1.Database
	switch {
	case (t.Database == "") == (t.Create == ""):
		return Result{}, &TargetError{Msg: "give either an existing database or the name of a new one"}
	case t.Database != "":
		db, err := api.Resolve(ctx, t.Database)
		if err != nil {
			return Result{}, err
		}
		if db, err = api.Get(ctx, db.UUID); err != nil {
			return Result{}, err
		}
		if db.NumTables > 0 && !t.Force {
			return Result{}, &TargetNotEmptyError{Target: fmt.Sprintf("database %s (%s)", db.Name, db.UUID), Tables: db.NumTables}
		}
		target = db
	default:
		db, err := api.Resolve(ctx, t.Create)
		var nf *d1.NotFoundError
		switch {
		case err == nil:
			return Result{}, &TargetError{Msg: fmt.Sprintf("a database named %q already exists (%s); pick another name, or restore into it with --database %s", t.Create, db.UUID, db.UUID)}
		case !errors.As(err, &nf):
			return Result{}, err
		}
	}

	d, err := Fetch(ctx, src, opts)
	if err != nil {
		return Result{}, err
	}
	defer d.Close()
	log.Info("backup checked", "key", d.Key, "sql_bytes", d.Size, "sql_sha256", d.SHA256, "statements", d.Statements)
	if err := d.CheckImportLimits(); err != nil {
		return Result{}, err
	}
	res := newResult(d)
	up := upload{path: d.Path, size: d.Size, md5: d.MD5}
	if d.Oversized > 0 {
		if up, err = rewriteForD1(ctx, d, opts); err != nil {
			return Result{}, err
		}
		defer os.Remove(up.path)
		res.SplitRows = up.splitRows
		log.Info("rows over D1's statement limit rewritten", "rows", up.splitRows, "sql_bytes", up.size)
	}

	if t.Create != "" {
		db, err := api.CreateDatabase(ctx, t.Create)
		if err != nil {
			return Result{}, err
		}
		target, res.Created = db, true
		log.Info("database created", "name", db.Name, "uuid", db.UUID)
	}
	res.DatabaseID, res.DatabaseName = target.UUID, target.Name

	f, err := os.Open(up.path)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	imp, err := api.Import(ctx, target.UUID, d1.ImportFile{Body: f, Size: up.size, MD5: up.md5}, d1.ImportOptions{
		PollInterval: opts.PollInterval,
		OnMessage:    func(m string) { log.Info("D1", "message", m) },
	})
	if err != nil {
		if res.Created {
			return res, fmt.Errorf("%w (the new database %s (%s) was left in place, empty: D1 rolls a failed import back)", err, target.Name, target.UUID)
		}
		return res, err
	}
	res.NumQueries, res.RowsWritten, res.FinalBookmark = imp.NumQueries, imp.RowsWritten, imp.FinalBookmark
	return res, nil
}

// ToSQLite restores a backup into a SQLite file at path. An existing
// non-empty file is refused unless force, and anything but a regular file
// (a directory, device, FIFO, socket, or a symbolic link to one) always;
// a symbolic link to a regular file has that file replaced. The file is
// replaced only once the load has succeeded (it is built beside it and
// renamed over it).
func ToSQLite(ctx context.Context, src Source, path string, force bool, opts Options) (Result, error) {
	if path == "" {
		return Result{}, &TargetError{Msg: "no SQLite file given"}
	}
	if fi, err := os.Stat(path); err == nil {
		switch {
		case !fi.Mode().IsRegular():
			return Result{}, &TargetError{Msg: fmt.Sprintf("%s exists and is not a regular file (%s); name a new file", path, fileKind(fi.Mode()))}
		case fi.Size() > 0 && !force:
			return Result{}, &TargetError{Msg: fmt.Sprintf("%s exists and is not empty; pass --force to replace it, or name a new file", path)}
		}
		if path, err = filepath.EvalSymlinks(path); err != nil {
			return Result{}, fmt.Errorf("restore: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return Result{}, fmt.Errorf("restore: %w", err)
	} else if _, lerr := os.Lstat(path); lerr == nil {
		return Result{}, &TargetError{Msg: fmt.Sprintf("%s is a symbolic link to nothing; name a new file", path)}
	}
	d, err := Fetch(ctx, src, opts)
	if err != nil {
		return Result{}, err
	}
	defer d.Close()
	res := newResult(d)

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	defer os.Remove(tmp.Name() + "-journal")
	db, err := openSQLite(tmp.Name())
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	st, err := load(ctx, db, d.Path, scratchBytes(d.Size), nil)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("restore: %w", ctx.Err())
		}
		return res, &LoadError{Key: d.Key, Err: err}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	res.SQLitePath, res.NumQueries, res.RowsWritten = path, st.Statements, st.RowsWritten
	return res, nil
}

// fileKind names what a non-regular file is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.Type().String()
}
