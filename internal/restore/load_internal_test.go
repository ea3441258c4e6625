package restore

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkLoad measures loading a D1-style dump statement by statement
// under the policy against a baseline in the same run: SQLite running the
// whole file in one call (its own prepare-with-tail loop, no policy).
// x-exec is the ratio of their times.
func BenchmarkLoad(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE \"orders\" (\"id\" INTEGER PRIMARY KEY, \"customer\" TEXT, \"note\" TEXT, \"total\" REAL, \"raw\" BLOB);\n")
	for i := 0; sb.Len() < 4<<20; i++ {
		fmt.Fprintf(&sb, "INSERT INTO \"orders\" (\"id\",\"customer\",\"note\",\"total\",\"raw\") VALUES(%d,'Customer %d',replace('two; three\\nfour','\\n',char(10)),%d.5,X'00FF%04X');\n", i, i, i, i%65536)
	}
	sb.WriteString("CREATE INDEX \"by_customer\" ON \"orders\" (\"customer\");\n")
	dir := b.TempDir()
	dump := filepath.Join(dir, "dump.sql")
	if err := os.WriteFile(dump, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	ctx := context.Background()
	var base, ours float64
	for i := 0; b.Loop(); i++ {
		p := filepath.Join(dir, fmt.Sprintf("base%d.sqlite", i))
		db, err := sql.Open("sqlite", p)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := db.Exec("BEGIN;\n" + sb.String() + "COMMIT;"); err != nil {
			b.Fatal(err)
		}
		base += float64(time.Since(t0))
		db.Close()

		db, err = openSQLite(filepath.Join(dir, fmt.Sprintf("ours%d.sqlite", i)))
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := load(ctx, db, dump, scratchBytes(int64(sb.Len())), nil); err != nil {
			b.Fatal(err)
		}
		ours += float64(time.Since(t1))
		db.Close()
	}
	b.ReportMetric(ours/base, "x-exec")
}

// TestGluedStatementsFail: were a text SQLite parses as two statements
// ever handed to the loader as one (Split cuts by SQLite's rule, so it is
// not), the second would be compiled while the first runs, under the
// policy for SQLite's own nested work, and refused.
func TestGluedStatementsFail(t *testing.T) {
	t.Parallel()
	db, err := openSQLite(filepath.Join(t.TempDir(), "g.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l := &loader{conn: conn, pol: newPolicy()}
	if err := l.pol.install(ctx, conn, 1<<30); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{
		"CREATE TABLE t (a);",
		"INSERT INTO t VALUES(1); INSERT INTO t VALUES(2);",
		"INSERT INTO t VALUES(3); VACUUM INTO 'x.db';",
		"COMMIT; INSERT INTO t VALUES(4);",
	} {
		err := l.exec(ctx, Statement{Index: int64(i + 1), Text: []byte(text)})
		if (err == nil) != (i == 0) {
			t.Errorf("%q: %v", text, err)
		}
	}
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows: %d (%v); want none", n, err)
	}
}
