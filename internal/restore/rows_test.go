package restore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/restore"
)

// recordingD1 is the real client, keeping a copy of what it imports.
type recordingD1 struct {
	*d1.Client
	imported [][]byte
}

func (r *recordingD1) Import(ctx context.Context, id string, f d1.ImportFile, opts d1.ImportOptions) (d1.ImportResult, error) {
	b, err := io.ReadAll(io.NewSectionReader(f.Body, 0, f.Size))
	if err != nil {
		return d1.ImportResult{}, err
	}
	r.imported = append(r.imported, b)
	return r.Client.Import(ctx, id, d1.ImportFile{Body: bytes.NewReader(b), Size: f.Size, MD5: f.MD5}, opts)
}

// bigRows holds rows over D1's 100 KB statement limit: 1 MiB BLOBs (every
// byte value, NULs) and texts (quotes, newlines, CR, unicode, NUL, bytes
// that are no UTF-8) in a
// rowid table with an INTEGER PRIMARY KEY AUTOINCREMENT, a WITHOUT ROWID table and a
// table keyed by its implicit rowid, integers beyond 2^53, reals, and text
// that looks numeric in a NUMERIC column.
const bigRows = `
CREATE TABLE big (id INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB, t TEXT, n INTEGER, r REAL, x TEXT);
CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB, w TEXT, n INTEGER) WITHOUT ROWID;
CREATE TABLE plain (a TEXT, b BLOB);
CREATE TABLE num (v NUMERIC, w);
WITH RECURSIVE i(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM i WHERE x < 4095)
INSERT INTO big SELECT 7, (SELECT unhex(group_concat(printf('%02X', x % 256), '')) FROM i), NULL, 9007199254740993, 0.1, NULL;
UPDATE big SET b = CAST(b || b || b || b || b || b || b || b AS BLOB), t = replace(printf('%.*c', 65536, 'x'), 'x', 'It''s' || char(10) || 'é🙂' || char(13) || char(0) || 'ok;');
UPDATE big SET b = CAST(b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b || b AS BLOB);
UPDATE big SET x = CAST(substr(b, 1, 200000) AS TEXT);
INSERT INTO big VALUES(8, X'00', 'small', -9223372036854775808, -1.5e-300, NULL);
INSERT INTO kv VALUES('key''s', randomblob(1048576), printf('%.*c', 1048576, 'w'), 9223372036854775807);
INSERT INTO kv VALUES('other', X'01', 'x', 1);
INSERT INTO plain VALUES('gone', NULL);
INSERT INTO plain VALUES('first', X'AA');
DELETE FROM plain WHERE a = 'gone';
INSERT INTO plain VALUES(printf('%.*c', 300000, 'p') || 'ü', zeroblob(300000));
INSERT INTO num VALUES(printf('%.*c', 200000, '0') || '1x', 'y');
`

func TestRowsOver100KBRestoreIntoD1(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	src, err := w.emu.CreateDatabase("big", bigRows)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults().Backup("test")
	cfg.PollInterval = time.Millisecond
	r, err := backup.NewRunner(w.api, w.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(context.Background(), backup.Target{DatabaseID: src.UUID})
	if err != nil {
		t.Fatal(err)
	}
	bsrc := restore.Source{Store: w.store, Key: sum.Key}

	rep, err := restore.Verify(context.Background(), bsrc, w.opts())
	if err != nil || rep.SplitRows != 4 || len(rep.Warnings) != 0 {
		t.Fatalf("verify: %v; split rows %d, warnings %q; want OK with 4 rows to split", err, rep.SplitRows, rep.Warnings)
	}

	api := &recordingD1{Client: w.api}
	res, err := restore.ToD1(context.Background(), api, bsrc, restore.Target{Create: "big-restored"}, w.opts())
	if err != nil {
		t.Fatal(err)
	}
	if res.SplitRows != 4 || len(api.imported) != 1 {
		t.Fatalf("result %+v, %d imports; want 4 rows split, one import", res, len(api.imported))
	}
	var n int
	if err := restore.Split(bytes.NewReader(api.imported[0]), func(s restore.Statement) error {
		n++
		if s.Size > 100_000 {
			t.Errorf("imported statement %d is %d bytes, over D1's 100,000", s.Index, s.Size)
		}
		return nil
	}); err != nil || n < 40 {
		t.Fatalf("imported SQL: %d statements, %v", n, err)
	}

	got, want := w.dbPath(t, res.DatabaseID), w.dbPath(t, src.UUID)
	if g, w := exactContents(t, got), exactContents(t, want); !slices.Equal(g, w) {
		t.Errorf("restored rows differ (type:hex of every value):\n got %.400q\nwant %.400q", g, w)
	}
	for _, q := range []string{
		`SELECT id || ' ' || quote(b) || ' ' || quote(n) || ' ' || quote(r) || ' ' || typeof(t) || typeof(x) FROM big ORDER BY id`,
		`SELECT quote(k) || ' ' || quote(v) || ' ' || quote(n) FROM kv ORDER BY k`,
		`SELECT typeof(v) || ' ' || quote(w) FROM num`,
	} {
		if g, w := query(t, openRO(t, got), q), query(t, openRO(t, want), q); !slices.Equal(g, w) || len(w) == 0 {
			t.Errorf("%s:\n got %.200q\nwant %.200q", q, g, w)
		}
	}
	// A D1 dump does not keep implicit rowids (its INSERTs leave them to
	// SQLite): the split rows get the rowids an unsplit load gives them.
	unsplit := w.dir + "/unsplit.sqlite"
	if _, err := restore.ToSQLite(context.Background(), bsrc, unsplit, false, w.opts()); err != nil {
		t.Fatal(err)
	}
	q := `SELECT rowid || ' ' || quote(b) || ' ' || typeof(a) FROM plain ORDER BY rowid`
	if g, w := query(t, openRO(t, got), q), query(t, openRO(t, unsplit), q); !slices.Equal(g, w) || len(w) != 2 {
		t.Errorf("%s:\n got %.200q\nwant %.200q", q, g, w)
	}
	for _, q := range []string{`SELECT b FROM big`, `SELECT CAST(t AS BLOB) FROM big`, `SELECT CAST(x AS BLOB) FROM big`, `SELECT v FROM kv`, `SELECT CAST(w AS BLOB) FROM kv`, `SELECT CAST(a AS BLOB) FROM plain`, `SELECT CAST(v AS BLOB) FROM num`} {
		if g, w := hashes(t, openRO(t, got), q), hashes(t, openRO(t, want), q); !slices.Equal(g, w) {
			t.Errorf("%s: SHA-256 %x, want %x", q, g, w)
		}
	}
}

// hashes is the SHA-256 of each value q selects.
func hashes(t *testing.T, db *sql.DB, q string) [][32]byte {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][32]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, sha256.Sum256(b))
	}
	slices.SortFunc(out, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// TestRowsOver100KBInQueryAPIDumps: FTS5 tables of a dump d1backup writes
// from the query API split the same way, keyed by rowid.
func TestRowsOver100KBInQueryAPIDumps(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	long := strings.Repeat("lorem ipsum dolor; ", 20000)
	dump := "CREATE VIRTUAL TABLE notes USING fts5(title, body);\n" +
		"INSERT INTO notes(rowid, title, body) VALUES(3, 'short', 'body');\n" +
		"INSERT INTO notes(rowid, title, body) VALUES(42, 'long', '" + long + "');\n"
	putBackup(t, w.store, testKey("q-fts", "none"), dump)
	api := &recordingD1{Client: w.api}
	res, err := restore.ToD1(context.Background(), api, restore.Source{Store: w.store, Key: testKey("q-fts", "none")}, restore.Target{Create: "notes"}, w.opts())
	if err != nil || res.SplitRows != 1 {
		t.Fatalf("got %+v, %v; want one row split", res, err)
	}
	db := openRO(t, w.dbPath(t, res.DatabaseID))
	if got := query(t, db, `SELECT rowid || ':' || length(body) FROM notes WHERE notes MATCH 'lorem' ORDER BY rowid`); !slices.Equal(got, []string{"42:" + itoa(int64(len(long)))}) {
		t.Errorf("search after restore: %q", got)
	}
	if got := hashes(t, db, `SELECT CAST(body AS BLOB) FROM notes WHERE rowid = 42`); len(got) != 1 || got[0] != sha256.Sum256([]byte(long)) {
		t.Errorf("the long body does not read back identical")
	}
}

// TestRowsOver100KBThatCannotBeSplit: a table with triggers before its
// rows (the UPDATEs would fire them) and a statement inserting several
// large rows are refused before anything reaches D1; verify warns.
func TestRowsOver100KBThatCannotBeSplit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	big := "'" + strings.Repeat("x", 120_000) + "'"
	for _, tt := range []struct {
		name, sql, want string
	}{
		{"trigger", "CREATE TABLE t (a);\nCREATE TABLE log (n);\nCREATE TRIGGER tr AFTER UPDATE ON t BEGIN INSERT INTO log VALUES(1); END;\nINSERT INTO t VALUES(" + big + ");\n", "has triggers"},
		{"two rows", "CREATE TABLE t (a);\nINSERT INTO t VALUES(" + big + "), (" + big + ");\n", "exactly one row"},
		{"long key", "CREATE TABLE t (k PRIMARY KEY, v) WITHOUT ROWID;\nINSERT INTO t VALUES(" + big + ", 1);\n", "too long"},
	} {
		key := testKey("u-"+tt.name, "none")
		putBackup(t, w.store, key, tt.sql)
		w.emu.ResetRequests()
		_, err := restore.ToD1(context.Background(), w.api, restore.Source{Store: w.store, Key: key}, restore.Target{Create: "u"}, w.opts())
		var le *restore.LimitError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "cannot be split: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want a LimitError saying %q", tt.name, err, tt.want)
		}
		if got := importRequests(w.emu); len(got) != 0 {
			t.Errorf("%s: requests on D1's write path: %v", tt.name, got)
		}
		rep, err := restore.Verify(context.Background(), restore.Source{Store: w.store, Key: key}, w.opts())
		if err != nil || rep.SplitRows != 0 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], tt.want) {
			t.Errorf("%s: verify %v, warnings %q; want OK with the reason as a warning", tt.name, err, rep.Warnings)
		}
	}
}
