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
