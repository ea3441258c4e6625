package restore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
)

// maxTxnCheck bounds the statements asked whether they are transaction
// control: BEGIN, COMMIT and their kind are short.
const maxTxnCheck = 4 << 10

// scan reads the statements of a dump for what D1 needs to know before an
// import: how many, how many over its statement limit, and which are
// transaction control (which D1 refuses). SQLite's parser says which are:
// a statement that may be one (short, starting with a comment or one of
// the letters of BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE) is
// compiled, not run, in an empty in-memory database under the loading
// policy, which notes transaction control.
func scan(r io.Reader, d *Dump) error {
	var det *txnDetector
	defer func() {
		if det != nil {
			det.close()
		}
	}()
	return Split(r, func(s Statement) error {
		d.Statements++
		if s.Size > MaxStatementBytes {
			d.Oversized++
		}
		if s.Size > maxTxnCheck || bytes.IndexByte([]byte("bBcCeErRsS-/"), s.Text[0]) < 0 {
			return nil
		}
		if det == nil {
			var err error
			if det, err = newTxnDetector(); err != nil {
				return err
			}
		}
		if det.isTxn(s.Text) && len(d.Limits) < 10 {
			d.Limits = append(d.Limits, fmt.Sprintf("statement %d (at byte %d) is transaction control (%q); D1 refuses BEGIN TRANSACTION/COMMIT/SAVEPOINT in imports (it runs the whole import in one transaction)", s.Index, s.Offset, excerpt(s.Text)))
		}
		return nil
	})
}

// txnDetector compiles statements in an empty in-memory database.
type txnDetector struct {
	db   *sql.DB
	conn *sql.Conn
	pol  *policy
}

func newTxnDetector() (*txnDetector, error) {
	db, err := sql.Open("sqlite", "file::memory:?_defensive=1")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err == nil {
		d := &txnDetector{db: db, conn: conn, pol: newPolicy()}
		if err = d.pol.install(ctx, conn, 1<<20); err == nil {
			return d, nil
		}
		conn.Close()
	}
	db.Close()
	return nil, fmt.Errorf("restore: statement checker: %w", err)
}

func (d *txnDetector) isTxn(text []byte) bool {
	d.pol.begin()
	defer func() { d.pol.phase = phaseOwn }()
	if stmt, err := d.conn.PrepareContext(context.Background(), string(text)); err == nil {
		stmt.Close()
	}
	return d.pol.txn
}

func (d *txnDetector) close() {
	d.conn.Close()
	d.db.Close()
}
