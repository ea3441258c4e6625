package restore

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"

	"github.com/d1backup/d1backup/internal/sqlitedb"
)

// loadStats describes a dump loaded into SQLite.
type loadStats struct {
	Statements  int64
	Skipped     int64 // BEGIN/COMMIT/SAVEPOINT/RELEASE: the load is one transaction
	RowsWritten int64
	// SplitRows counts rows whose INSERT was over D1's statement limit and
	// was rewritten into statements under it (when rewriting).
	SplitRows int64
	// Unsplit says why statements over the limit could not be rewritten.
	Unsplit []string
}

// RefusedError: a statement of the dump is not one a dump holds (it would
// attach a file, run a PRAGMA, read other tables, ...). SQLite's
// authorizer refused it; nothing of it ran.
type RefusedError struct {
	Index  int64 // the statement's number
	Offset int64 // its first byte in the dump
	Reason string
	Text   string // its beginning
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("statement %d (at byte %d) was refused: %s: %q", e.Index, e.Offset, e.Reason, e.Text)
}

// excerpt is the beginning of a statement, for messages.
func excerpt(text []byte) string {
	const n = 80
	if len(text) > n {
		return string(text[:n]) + "..."
	}
	return string(text)
}

func openSQLite(path string) (*sql.DB, error) {
	// Foreign keys stay off while loading, as the sqlite3 shell's .read of
	// a dump does; foreign_key_check reports violations afterwards.
	// Defensive mode keeps statements from writing the schema or shadow
	// tables directly.
	return sqlitedb.Open(path, "_defensive=1", "foreign_keys(0)")
}

// loader runs a dump's statements one by one under the policy.
type loader struct {
	conn  *sql.Conn
	pol   *policy
	stats loadStats
	// rw, when set, writes the dump for D1 with statements over its limit
	// rewritten.
	rw *rewriter
}

// load executes the SQL file at sqlPath in db, in one transaction, each
// statement compiled under the policy (see policy.go). The database may
// grow to maxDBBytes (0: no bound). With rewrite set, it also writes
// there the dump as D1 can import it: each statement as it is, but rows
// whose INSERT is over MaxStatementBytes as an INSERT and UPDATEs under
// it (see rewrite.go).
func load(ctx context.Context, db *sql.DB, sqlPath string, maxDBBytes int64, rewrite io.Writer) (loadStats, error) {
	f, err := os.Open(sqlPath)
	if err != nil {
		return loadStats{}, err
	}
	defer f.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return loadStats{}, err
	}
	defer conn.Close()
	l := &loader{conn: conn, pol: newPolicy()}
	if rewrite != nil {
		l.rw = newRewriter(rewrite)
	}
	if err := l.pol.install(ctx, conn, maxDBBytes); err != nil {
		return loadStats{}, err
	}
	var before int64
	if err := conn.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&before); err != nil {
		return loadStats{}, err
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return loadStats{}, err
	}
	err = Split(f, func(s Statement) error {
		if l.rw != nil && s.Size > MaxStatementBytes {
			return l.rw.oversized(ctx, l, s)
		}
		if err := l.exec(ctx, s); err != nil {
			return err
		}
		if l.rw != nil {
			return l.rw.copy(s.Text)
		}
		return nil
	})
	if err == nil && l.rw != nil {
		err = l.rw.flush()
	}
	if err == nil {
		_, err = conn.ExecContext(ctx, `COMMIT`)
	}
	if err != nil {
		conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck
		return l.stats, err
	}
	var after int64
	if err := conn.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&after); err != nil {
		return l.stats, err
	}
	l.stats.RowsWritten = after - before
	return l.stats, nil
}

// exec compiles a dump statement under the policy, checks it is one a
// dump holds, and runs it.
func (l *loader) exec(ctx context.Context, s Statement) error {
	p := l.pol
	defer func() { p.phase = phaseOwn }()
	p.begin()
	stmt, err := l.conn.PrepareContext(ctx, string(s.Text))
	if err == nil {
		defer stmt.Close()
		if why := p.refusedKind(s.Text); why != "" {
			return &RefusedError{Index: s.Index, Offset: s.Offset, Reason: why, Text: excerpt(s.Text)}
		}
		p.phase = phaseStep
		_, err = stmt.ExecContext(ctx)
	}
	if err != nil {
		if p.refusal != "" && ctx.Err() == nil {
			return &RefusedError{Index: s.Index, Offset: s.Offset, Reason: p.refusal, Text: excerpt(s.Text)}
		}
		return fmt.Errorf("statement %d (at byte %d): %w: %q", s.Index, s.Offset, err, excerpt(s.Text))
	}
	if p.txn && !p.writes {
		l.stats.Skipped++
	} else {
		l.stats.Statements++
	}
	return nil
}

// scratchBytes bounds a database loaded from sqlBytes of SQL: generous for
// indexes and fts5 (a database is seldom larger than its dump), yet a dump
// that makes data out of nothing (zeroblob, replace) cannot fill the disk.
func scratchBytes(sqlBytes int64) int64 { return 16*sqlBytes + 256<<20 }
