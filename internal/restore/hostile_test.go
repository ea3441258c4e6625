package restore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/restore"
	"github.com/d1backup/d1backup/internal/store/local"
	"github.com/d1backup/d1backup/internal/testenv"
)

// hostileStore is a local store in a fresh folder, with the folder where
// an attacker would like files to appear.
func hostileStore(t *testing.T) (st *local.Store, tmp, outside string) {
	t.Helper()
	dir := t.TempDir()
	st, err := local.New(filepath.Join(dir, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	tmp, outside = filepath.Join(dir, "tmp"), filepath.Join(dir, "outside")
	for _, d := range []string{tmp, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return st, tmp, outside
}

// victim is a SQLite file with a secret, outside the restore's reach.
func victim(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "victim.db")
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE s (secret); INSERT INTO s VALUES('hunter2')`); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostileDumpsAreRefused: a dump whose manifest matches it, written by
// someone with write access to the bucket, gets loaded as data or not at
// all. Each case names the statement that must be refused; after verify
// and --to-sqlite, nothing may exist outside the restore's own files.
func TestHostileDumpsAreRefused(t *testing.T) {
	t.Parallel()
	st, tmp, outside := hostileStore(t)
	vic := victim(t, outside)
	evil := filepath.Join(outside, "evil.db")
	trig := "CREATE TABLE t (qty);\nCREATE TRIGGER tr BEFORE INSERT ON t BEGIN SELECT CASE WHEN new.qty < 0 THEN RAISE(ABORT,'x') END;\fEND\f;"
	for _, tt := range []struct {
		name string
		sql  string
		stmt int    // the statement refused
		want string // in the refusal
	}{
		{"attach creates a file", fmt.Sprintf("ATTACH DATABASE '%s' AS x;\nCREATE TABLE x.t(a);\nINSERT INTO x.t VALUES('owned');\n", evil), 1, "attaches"},
		{"attach copies local data", fmt.Sprintf("CREATE TABLE t (a);\nATTACH '%s' AS v;\nINSERT INTO t SELECT secret FROM v.s;\n", vic), 2, "attaches"},
		{"attach by URI", fmt.Sprintf("CREATE TABLE t (a);\nATTACH 'file:%s?mode=rwc' AS v;\n", evil), 2, "attaches"},
		{"vacuum into", fmt.Sprintf("CREATE TABLE t (a);\nVACUUM INTO '%s';\n", evil), 2, "no statement a dump holds"},
		{"vacuum", "CREATE TABLE t (a);\nVACUUM;\n", 2, "no statement a dump holds"},
		// The trigger ends at END\f; COMMIT is a statement of its own
		// (made a no-op: the load is one transaction), VACUUM another.
		{"form feed glue", trig + fmt.Sprintf("COMMIT;VACUUM INTO '%s';\n", evil), 4, "no statement a dump holds"},
		{"detach", "DETACH main;\n", 1, "attaches"},
		{"pragma writable_schema", "CREATE TABLE t (a);\nPRAGMA writable_schema=ON;\n", 2, "PRAGMA writable_schema"},
		{"pragma journal_mode", "PRAGMA journal_mode=OFF;\n", 1, "PRAGMA journal_mode"},
		{"pragma function", "CREATE TABLE t (a);\nINSERT INTO t SELECT name FROM pragma_table_list;\n", 2, "reads table pragma_table_list"},
		{"load_extension", "SELECT load_extension('/nonexistent.so');\n", 1, "load_extension"},
		{"load_extension in a schema", "CREATE TABLE t (a CHECK (load_extension('/x.so')));\n", 1, "load_extension"},
		{"a query", "SELECT randomblob(999000000);\n", 1, "changes nothing"},
		{"recursive query", "CREATE TABLE t (a);\nINSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c;\n", 2, "queries c"},
		{"insert from another table", "CREATE TABLE a (x);\nINSERT INTO a VALUES(1);\nCREATE TABLE b (x);\nINSERT INTO b SELECT x FROM a;\n", 4, "reads table a"},
		{"subqueries", "CREATE TABLE a (x, y);\nINSERT INTO a VALUES((SELECT 1), (SELECT 2));\n", 2, "holds a query"},
		{"trigger fires", "CREATE TABLE t (a);\nCREATE TABLE u (a);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u SELECT * FROM u; END;\nINSERT INTO t VALUES(1);\n", 4, "fires trigger tr"},
		{"temporary table", "CREATE TEMP TABLE t (a);\n", 1, "temp"},
		{"temporary trigger", "CREATE TABLE t (a);\nCREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;\n", 2, "temp"},
		{"rtree", "CREATE VIRTUAL TABLE r USING rtree(id, a, b);\n", 1, "using rtree"},
		{"dbstat", "CREATE VIRTUAL TABLE s USING dbstat;\n", 1, "using dbstat"},
		{"sqlite_dbpage", "CREATE TABLE t (a);\nINSERT INTO sqlite_dbpage VALUES(1, zeroblob(4096));\n", 2, "writes sqlite_dbpage"},
		{"update", "CREATE TABLE t (a);\nINSERT INTO t VALUES(1);\nUPDATE t SET a = 2;\n", 3, "updates t"},
		{"upsert", "CREATE TABLE t (a PRIMARY KEY, b);\nINSERT INTO t VALUES(1, 1);\nINSERT INTO t VALUES(1, 2) ON CONFLICT(a) DO UPDATE SET b = 3;\n", 3, "reads table t"},
		{"delete", "CREATE TABLE t (a);\nINSERT INTO t VALUES(1);\nDELETE FROM t;\n", 3, "deletes from t"},
		{"drop", "CREATE TABLE t (a);\nDROP TABLE t;\n", 2, "drops"},
		{"alter", "CREATE TABLE t (a);\nALTER TABLE t ADD COLUMN b;\n", 2, "drops, alters"},
		{"rollback", "CREATE TABLE t (a);\nROLLBACK;\n", 2, "rolls back"},
		{"rollback to savepoint", "SAVEPOINT s;\nCREATE TABLE t (a);\nROLLBACK TO s;\n", 3, "rolls back"},
		{"view used", "CREATE TABLE t (a);\nCREATE VIEW v AS SELECT a FROM t;\nINSERT INTO t SELECT * FROM v;\n", 3, "queries v"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := testKey("x-"+tt.name, "none")
			putBackup(t, st, key, tt.sql)
			src := restore.Source{Store: st, Key: key}
			opts := restore.Options{TempDir: tmp}
			ctx := context.Background()

			rep, err := restore.Verify(ctx, src, opts)
			var re *restore.RefusedError
			if got := failed(rep, err); got != restore.CheckLoad || !errors.As(err, new(*restore.VerificationError)) {
				t.Fatalf("verify: failed check %q, want %q (%v)", got, restore.CheckLoad, err)
			}
			detail := rep.Checks[len(rep.Checks)-1].Detail
			if want := fmt.Sprintf("statement %d (at byte ", tt.stmt); !strings.HasPrefix(detail, want) || !strings.Contains(detail, "refused") || !strings.Contains(detail, tt.want) {
				t.Errorf("verify: load detail %q, want it to start %q and say it was refused: %q", detail, want, tt.want)
			}

			out := filepath.Join(tmp, "out.sqlite")
			_, err = restore.ToSQLite(ctx, src, out, false, opts)
			if !errors.As(err, &re) || re.Index != int64(tt.stmt) || !strings.Contains(re.Reason, tt.want) {
				t.Errorf("--to-sqlite: got %v, want statement %d refused: %q", err, tt.stmt, tt.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("--to-sqlite left %s: %v", out, err)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("files left in the temporary folder: %v", ents)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("files outside the restore: %v, want only victim.db", ents)
			}
		})
	}
}

// TestHostileValuesAreBounded: a value, a row or the database can only
// grow so far, whatever a dump asks for.
func TestHostileValuesAreBounded(t *testing.T) {
	t.Parallel()
	st, tmp, _ := hostileStore(t)
	zeros := "CREATE TABLE t (a);\n" + strings.Repeat("INSERT INTO t VALUES(zeroblob(4000000));\n", 70)
	for _, tt := range []struct {
		name, sql, want string
	}{
		{"randomblob", "CREATE TABLE t (a);\nINSERT INTO t VALUES(randomblob(999000000));\n", "string or blob too big"},
		{"replace amplifies", "CREATE TABLE t (a);\nINSERT INTO t VALUES(replace(printf('%.2000c', 'a'), 'a', printf('%.4000c', 'b')));\n", "string or blob too big"},
		{"too many columns", "CREATE TABLE t (" + columns(300) + ");\n", "too many columns"},
		{"too many function arguments", "CREATE TABLE t (a);\nINSERT INTO t VALUES(max(" + strings.Repeat("1, ", 100) + "1));\n", "too many arguments"},
		// 70 statements of 41 bytes ask for 280 MB; the database may be 16
		// times the SQL plus 256 MiB.
		{"database size", zeros, "database or disk is full"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := testKey("x-"+tt.name, "none")
			putBackup(t, st, key, tt.sql)
			out := filepath.Join(tmp, "out.sqlite")
			_, err := restore.ToSQLite(context.Background(), restore.Source{Store: st, Key: key}, out, false, restore.Options{TempDir: tmp})
			var le *restore.LoadError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a LoadError saying %q", err, tt.want)
			}
		})
	}
}

// TestHostileMemory: the SELECT randomblob(999000000) took 1.97 GB.
// A statement holds at most a row of 100 values of 4 MiB (SQLite builds a
// row before it checks its size): loading the worst of these must not grow
// this process by more than 512 MiB. (Not parallel: the peak is the
// process's.)
func TestHostileMemory(t *testing.T) {
	if testenv.PeakRSS() < 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no peak RSS on this system: the memory bound cannot be checked")
		}
		t.Skip("no peak RSS on this system")
	}
	st, tmp, _ := hostileStore(t)
	dumps := []string{
		"SELECT randomblob(999000000);\n",
		"CREATE TABLE t (a);\nINSERT INTO t VALUES(randomblob(999000000));\n",
		"CREATE TABLE t (a, b, c, d);\nINSERT INTO t VALUES(zeroblob(4000000), zeroblob(4000000), zeroblob(4000000), hex(zeroblob(2000000)));\n",
		"CREATE TABLE t (" + columns(100) + ");\nINSERT INTO t VALUES(" + strings.TrimSuffix(strings.Repeat("randomblob(4000000), ", 100), ", ") + ");\n",
		"CREATE TABLE t (a, " + generated(99) + ");\nINSERT INTO t(a) VALUES('x');\n",
	}
	for i, sql := range dumps {
		putBackup(t, st, testKey(fmt.Sprintf("m-%d", i), "none"), sql)
	}
	testenv.ResetPeakRSS()
	base := testenv.PeakRSS()
	for i := range dumps {
		rep, err := restore.Verify(context.Background(), restore.Source{Store: st, Key: testKey(fmt.Sprintf("m-%d", i), "none")}, restore.Options{TempDir: tmp})
		if i != 2 && failed(rep, err) != restore.CheckLoad {
			t.Errorf("dump %d: %v, want a failed load", i, err)
		}
	}
	grew := testenv.PeakRSS() - base
	t.Logf("peak RSS grew by %d MiB", grew>>20)
	if grew > 512<<20 {
		t.Errorf("peak RSS grew by %d MiB, want at most 512", grew>>20)
	}
}

func columns(n int) string {
	var cs []string
	for i := range n {
		cs = append(cs, fmt.Sprintf("c%d", i))
	}
	return strings.Join(cs, ", ")
}

// generated declares n stored columns of 4 MB computed from column a.
func generated(n int) string {
	var cs []string
	for i := range n {
		cs = append(cs, fmt.Sprintf("g%d AS (printf('%%.*c', 4000000, a)) STORED", i))
	}
	return strings.Join(cs, ", ")
}
