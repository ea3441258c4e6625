package restore

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// D1 refuses statements over 100 KB while rows may hold 2 MB. A row whose
// INSERT is over the limit goes to D1 as an INSERT with its large values
// cut short plus UPDATEs that append the rest, each statement under
// splitTarget, keyed by rowid (primary key for WITHOUT ROWID tables):
//
//	INSERT INTO "t" (rowid,"id","body") VALUES(7,7,'x');
//	UPDATE "t" SET "body" = "body" || '...' WHERE rowid = 7;
//	UPDATE "t" SET "body" = CAST(substr(CAST("body" AS BLOB), 2) AS TEXT) WHERE rowid = 7;
//
// SQLite is the parser: the original INSERT runs in the scratch database,
// the row it made is read back (typeof and exact bytes, quote() for
// numbers), and the rewritten statements are built from that. Then they
// replace the original's effect in the scratch database, whose row must
// read back identical, or the statement stays as it is and counts as one
// D1 would refuse.
//
// Text grows from a one-character marker that the last UPDATE strips, so
// that no intermediate value looks like a number to a NUMERIC column's
// affinity; BLOBs grow as CAST(b || X'..' AS BLOB), since || makes TEXT.
// A table with triggers at that point of the dump is not rewritten (the
// UPDATEs would fire them; D1 dumps create triggers after the rows).

// splitTarget is the most a rewritten statement may hold.
const splitTarget = 90_000

// rewriter writes the dump for D1.
type rewriter struct {
	w *bufio.Writer
}

func newRewriter(w io.Writer) *rewriter { return &rewriter{w: bufio.NewWriterSize(w, 256<<10)} }

// copy writes a statement as it is.
func (rw *rewriter) copy(text []byte) error {
	rw.w.Write(text)
	return rw.w.WriteByte('\n')
}

func (rw *rewriter) flush() error { return rw.w.Flush() }

// value is a column value as SQLite reads it back: its type (typeof) and
// its quote() (integer, real) or exact bytes (text, blob).
type value struct {
	typ string
	b   []byte
}

// table is what rewriting needs of a table.
type table struct {
	name    string
	virtual bool
	cols    []string // insertable columns, in order
	pk      []string // WITHOUT ROWID: its primary key columns
	rowid   string   // rowid tables: a name for the rowid no column shadows
}

// oversized loads a statement over MaxStatementBytes and writes it for D1,
// rewritten if it can be.
func (rw *rewriter) oversized(ctx context.Context, l *loader, s Statement) error {
	own := func(q string) error { _, err := l.conn.ExecContext(ctx, q); return err }
	if err := own(`SAVEPOINT d1backup_split`); err != nil {
		return err
	}
	var ins inserted
	err := l.withHook(func(d sqlite.SQLitePreUpdateData) {
		ins.ops++
		if d.Op == sqlite3.SQLITE_INSERT && ins.ops == 1 {
			ins.table, ins.rowid = d.TableName, d.NewRowID
			ins.vals = make([]any, d.Count())
			d.New(ins.vals...) //nolint:errcheck // a missing value fails the key lookup
		}
	}, func() error { return l.exec(ctx, s) })
	if err != nil {
		own(`ROLLBACK TO d1backup_split`) //nolint:errcheck
		own(`RELEASE d1backup_split`)     //nolint:errcheck
		return err
	}
	var stmts []string
	r, why := capture(ctx, l, ins)
	if why == "" {
		stmts, why = r.chunk()
	}
	if why == "" {
		if err := own(`ROLLBACK TO d1backup_split`); err != nil {
			return err
		}
		if why = r.replay(ctx, l.conn, stmts); why != "" {
			// Back to the original statement's row.
			if err := own(`ROLLBACK TO d1backup_split`); err != nil {
				return err
			}
			if err := l.exec(ctx, s); err != nil {
				return err
			}
			l.stats.Statements--
		}
	}
	if err := own(`RELEASE d1backup_split`); err != nil {
		return err
	}
	if why != "" {
		l.stats.Unsplit = append(l.stats.Unsplit, fmt.Sprintf("statement %d (at byte %d) is %d bytes, over D1's %d, and cannot be split: %s", s.Index, s.Offset, s.Size, MaxStatementBytes, why))
		return rw.copy(s.Text)
	}
	l.stats.SplitRows++
	for _, st := range stmts {
		if err := rw.copy([]byte(st)); err != nil {
			return err
		}
	}
	return nil
}

// inserted is what the pre-update hook saw a statement write.
type inserted struct {
	ops   int    // rows written, in any table
	table string // the first write's table, when an INSERT
	rowid int64
	vals  []any // its new values (for a WITHOUT ROWID table's key)
}

// withHook runs fn with a pre-update hook on the loader's connection.
func (l *loader) withHook(hook sqlite.PreUpdateHookFn, fn func() error) error {
	set := func(h sqlite.PreUpdateHookFn) error {
		return l.conn.Raw(func(dc any) error {
			r, ok := dc.(sqlite.HookRegisterer)
			if !ok {
				return fmt.Errorf("the SQLite driver offers no pre-update hook")
			}
			r.RegisterPreUpdateHook(h)
			return nil
		})
	}
	if err := set(hook); err != nil {
		return err
	}
	err := fn()
	if uerr := set(nil); err == nil {
		err = uerr
	}
	return err
}

// row is a row that a statement inserted, as read back.
type row struct {
	t     table
	key   string // a WHERE condition that finds it
	rowid string // its rowid, for rowid tables
	vals  []value
}

// capture finds the one row the statement inserted and reads it back; why
// says why it cannot.
func capture(ctx context.Context, l *loader, ins inserted) (r row, why string) {
	name := l.pol.insertInto
	if name == "" {
		return r, "it inserts no row"
	}
	if r.t, why = describe(ctx, l.conn, name); why != "" {
		return r, why
	}
	rowid := ins.rowid
	switch {
	case r.t.virtual:
		// fts5 writes its shadow tables; its own row is the last insert.
		var changes int64
		if err := l.conn.QueryRowContext(ctx, `SELECT changes(), last_insert_rowid()`).Scan(&changes, &rowid); err != nil || changes != 1 {
			return r, "it does not insert exactly one row"
		}
	case ins.ops != 1 || ins.table == "" || !strings.EqualFold(ins.table, r.t.name):
		return r, "it does not insert exactly one row"
	case r.t.rowid == "":
		var err error
		if r.key, err = pkKey(ctx, l.conn, r.t, ins.vals); err != nil {
			return r, err.Error()
		}
	}
	if r.t.rowid != "" {
		r.rowid = strconv.FormatInt(rowid, 10)
		r.key = r.t.rowid + " = " + r.rowid
	}
	var err error
	if r.vals, err = readRow(ctx, l.conn, r.t.name, r.t.cols, r.key); err != nil {
		return r, fmt.Sprintf("its row cannot be read back: %v", err)
	}
	return r, ""
}

// upload is the SQL file D1 gets.
type upload struct {
	path      string
	size      int64
	md5       string
	splitRows int64
}

// rewriteForD1 loads the dump into a scratch SQLite database and writes,
// beside it, the dump with the rows over D1's statement limit rewritten.
// A row that cannot be is a *LimitError; a dump that does not load, a
// *LoadError. Nothing is left in TempDir but the returned file.
func rewriteForD1(ctx context.Context, d *Dump, opts Options) (_ upload, err error) {
	scratch, err := os.CreateTemp(opts.TempDir, verifyScratchPrefix)
	if err != nil {
		return upload{}, fmt.Errorf("restore: scratch database: %w", err)
	}
	scratch.Close()
	defer os.Remove(scratch.Name())
	defer os.Remove(scratch.Name() + "-journal")
	out, err := os.CreateTemp(opts.TempDir, "d1backup-d1-*.sql")
	if err != nil {
		return upload{}, fmt.Errorf("restore: temporary file: %w", err)
	}
	up := upload{path: out.Name()}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("restore: temporary file: %w", cerr)
		}
		if err != nil {
			os.Remove(up.path)
		}
	}()
	db, err := openSQLite(scratch.Name())
	if err != nil {
		return upload{}, fmt.Errorf("restore: scratch database: %w", err)
	}
	sum := md5.New()
	st, err := load(ctx, db, d.Path, scratchBytes(d.Size), io.MultiWriter(out, sum))
	db.Close()
	switch {
	case err != nil && ctx.Err() != nil:
		return upload{}, fmt.Errorf("restore: %w", ctx.Err())
	case err != nil:
		return upload{}, &LoadError{Key: d.Key, Err: err}
	case len(st.Unsplit) > 0:
		return upload{}, &LimitError{Key: d.Key, Problems: st.Unsplit[:min(len(st.Unsplit), 10)]}
	}
	// What was written is the file's length so far.
	if up.size, err = out.Seek(0, io.SeekCurrent); err != nil {
		return upload{}, fmt.Errorf("restore: temporary file: %w", err)
	}
	up.md5, up.splitRows = hex.EncodeToString(sum.Sum(nil)), st.SplitRows
	if up.size > MaxImportBytes {
		return upload{}, &LimitError{Key: d.Key, Problems: []string{fmt.Sprintf("with its rows split, the SQL is %d bytes; D1 imports at most %d (5 GB)", up.size, int64(MaxImportBytes))}}
	}
	return up, nil
}
