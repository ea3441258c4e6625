package querydump_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/querydump"
)

// values holds every kind of value that must cross byte-exact: integers
// beyond 2^53 (JSON numbers would round them), reals at the edges, BLOBs
// with NUL bytes, text with quotes, newlines, unicode, a NUL byte, bytes
// that are not UTF-8, and a real U+FFFD.
const values = `
CREATE TABLE v (id INTEGER PRIMARY KEY, x);
INSERT INTO v (x) VALUES (9223372036854775807), (-9223372036854775808), (9007199254740993), (0.1), (1e308),
  (-0.0), (9e999), (-9e999), (2.5e-300), (123456789012345678.0), (1.0), (0), (-1),
  (X'00FF0001'), (X''), ('it''s "quoted"'), ('line1' || char(10) || 'line2' || char(13) || char(10)),
  ('Zoë ★ 日本語 🙂'), (''), ('a' || char(0) || 'b'), (CAST(X'FF41C0' AS TEXT)), ('�'), (NULL),
  ('\n'), (' trailing '), ('x;y'), ('-- not a comment'), ('/* nor this */');
CREATE TABLE "odd ""name""" ("rowid" TEXT, "select" INT, c);
INSERT INTO "odd ""name""" VALUES ('r1', 1, 'a'), ('r2', 2, 'b'), ('r2', 2, 'b');
CREATE TABLE kv (k TEXT COLLATE NOCASE, n INTEGER, v BLOB, PRIMARY KEY (k, n)) WITHOUT ROWID;
INSERT INTO kv VALUES ('b', 2, X'01'), ('A', 1, NULL), ('a ''q', 3, 'x'), ('B', 1, 1.5), ('c', -5, 0);
CREATE TABLE mixed (k PRIMARY KEY, v) WITHOUT ROWID;
INSERT INTO mixed VALUES (1, 'int'), ('1', 'text'), (X'01', 'blob'), (2.5, 'real'), (-3, 'neg'), ('', 'empty');
CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, g TEXT GENERATED ALWAYS AS (upper(n)) VIRTUAL, n TEXT);
INSERT INTO seq (n) VALUES ('a'), ('b'), ('c');
DELETE FROM seq WHERE id = 3;
CREATE TABLE empty (a);
CREATE INDEX kv_v ON kv(v);
CREATE VIEW upper_seq AS SELECT g FROM seq;
CREATE TRIGGER seq_log AFTER INSERT ON seq BEGIN INSERT INTO empty VALUES (CASE WHEN new.n = 'x' THEN 1 ELSE 2 END); END;
`

func client(t testing.TB, emu *d1emutest.Emulator) *d1.Client {
	t.Helper()
	cfg := d1.NewConfig(emu.AccountID(), emu.Token(), emu.BaseURL)
	cfg.HTTPClient, cfg.MaxRetries = emu.HTTP.Client(), 0
	c, err := d1.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func noSleep(context.Context, time.Duration) error { return nil }

func write(t *testing.T, api querydump.API, id string, opts querydump.Options) ([]byte, querydump.Stats) {
	t.Helper()
	var b bytes.Buffer
	st, err := querydump.Write(context.Background(), api, id, &b, opts)
	if err != nil {
		t.Fatalf("Write: %v\n%s", err, b.String())
	}
	if st.Bytes != int64(b.Len()) {
		t.Errorf("stats say %d bytes, wrote %d", st.Bytes, b.Len())
	}
	return b.Bytes(), st
}

// load restores a dump into a new SQLite file, as restore --to-sqlite does
// (foreign keys off while loading, one transaction).
func load(t *testing.T, dump []byte) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "restored.sqlite")+"?_pragma=foreign_keys(0)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// One transaction, as restore loads: a commit per row would fsync per row.
	if _, err := db.Exec("BEGIN;\n" + string(dump) + "\nCOMMIT;"); err != nil {
		t.Fatalf("load dump: %v\n%s", err, dump)
	}
	return db
}

func source(t *testing.T, emu *d1emutest.Emulator, id string) *sql.DB {
	t.Helper()
	path, err := emu.DBPath(id)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// contents is every row of every ordinary table and of sqlite_sequence, as
// SQLite's own literal and storage class of each value, sorted (rowids of
// tables without an INTEGER PRIMARY KEY are not part of a dump, in D1's
// either); and the schema, shadow tables aside.
func contents(t *testing.T, db *sql.DB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	rows, err := db.Query(`SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var typ, name, tbl, text string
		if err := rows.Scan(&typ, &name, &tbl, &text); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name, "_fts_") || strings.Contains(name, "_ext_") || strings.Contains(name, "_cl_") {
			continue // FTS5 shadow tables: rebuilt, not copied
		}
		out["schema"] = append(out["schema"], typ+"|"+name+"|"+tbl+"|"+text)
		if typ == "table" && !strings.HasPrefix(text, "CREATE VIRTUAL") {
			tables = append(tables, name)
		}
	}
	rows.Close()
	for _, name := range tables {
		var cols []string
		crows, err := db.Query(`SELECT name FROM pragma_table_info(?)`, name)
		if err != nil {
			t.Fatal(err)
		}
		for crows.Next() {
			var c string
			crows.Scan(&c)
			q := `"` + strings.ReplaceAll(c, `"`, `""`) + `"`
			cols = append(cols, "quote("+q+")||':'||typeof("+q+")")
		}
		crows.Close()
		r, err := db.Query(`SELECT ` + strings.Join(cols, "||'|'||") + ` FROM "` + strings.ReplaceAll(name, `"`, `""`) + `"`)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var s []byte // []byte: text with a NUL byte or bad UTF-8 stays as it is
			if err := r.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out[name] = append(out[name], string(s))
		}
		r.Close()
		slices.Sort(out[name])
	}
	return out
}

func same(t *testing.T, what string, got, want map[string][]string) {
	t.Helper()
	for k := range want {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("%s: %s differs\ngot  %q\nwant %q", what, k, got[k], want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s restored, not in the source", what, k)
		}
	}
}

// TestValuesExact restores the dump into SQLite and compares every value's
// literal and storage class with the source, read page by page, read
// column by column in chunks, and with pages D1 refuses as too large.
func TestValuesExact(t *testing.T) {
	small := querydump.DefaultOptions()
	small.FirstPageRows, small.PageRows, small.PageBytes, small.Sleep = 2, 3, 64, noSleep
	chunked := small
	chunked.RowBytes, chunked.ChunkBytes = 1, 3
	for _, tt := range []struct {
		name string
		emu  d1emu.Options
		opts querydump.Options
	}{
		{"defaults", d1emu.Options{}, querydump.DefaultOptions()},
		{"small pages", d1emu.Options{}, small},
		{"column by column in chunks", d1emu.Options{}, chunked},
		{"response limit", d1emu.Options{MaxResponseBytes: 2500}, querydump.DefaultOptions()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			emu := d1emutest.Start(t, tt.emu)
			db := emu.MustCreate(t, "values", values)
			dump, st := write(t, client(t, emu), db.UUID, tt.opts)
			same(t, tt.name, contents(t, load(t, dump)), contents(t, source(t, emu, db.UUID)))
			if st.Rows != 28+3+5+6+2+1 || st.Tables != 6 || len(st.Warnings) != 0 || st.Changed {
				t.Errorf("stats %+v, want 45 rows (sqlite_sequence's included) in 6 tables, no warnings", st)
			}
			if !bytes.HasPrefix(dump, []byte("PRAGMA defer_foreign_keys=TRUE;\n")) {
				t.Errorf("dump does not start with D1's PRAGMA line")
			}
		})
	}
}

// TestSameAsExport: for a database D1 can export, the query dump restores
// to what the export restores to.
func TestSameAsExport(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	db := emu.MustCreate(t, "sample", d1emu.SampleSQL)
	dump, _ := write(t, client(t, emu), db.UUID, querydump.DefaultOptions())
	same(t, "sample", contents(t, load(t, dump)), contents(t, load(t, emu.MustDump(t, db.UUID))))
}

var matches = []string{"nightly", "line", "semicolon", "gap OR notes", "zoë", "brien", "night*"}

func matchRowids(t *testing.T, db *sql.DB, table, q string) []int64 {
	t.Helper()
	rows, err := db.Query(`SELECT rowid FROM "`+table+`" WHERE "`+table+`" MATCH ? ORDER BY rowid`, q)
	if err != nil {
		t.Fatalf("%s MATCH %q: %v", table, q, err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		out = append(out, id)
	}
	return out
}

// TestFTS5 backs up what D1 cannot export: contentful, external-content and
// contentless FTS5 tables. The restored tables answer the same MATCH
// queries; the contentless one comes back empty, with a warning.
func TestFTS5(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	db := emu.MustCreateFTS5(t, "search")
	emu.MustExec(t, db.UUID, `CREATE VIRTUAL TABLE vocab USING fts5vocab(articles_fts, 'row');
CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO docs VALUES (1, 'semicolon view'), (5, 'nightly view');
CREATE VIEW docs_view AS SELECT id, body FROM docs;
CREATE VIRTUAL TABLE by_view USING fts5(body, content='docs_view', content_rowid='id');
INSERT INTO by_view(by_view) VALUES ('rebuild');
CREATE TRIGGER articles_ai AFTER INSERT ON articles BEGIN
  INSERT INTO articles_ext(rowid, title, body) VALUES (new.id, new.title, new.body);
END;`)
	dump, st := write(t, client(t, emu), db.UUID, querydump.DefaultOptions())
	src, got := source(t, emu, db.UUID), load(t, dump)
	same(t, "fts5", contents(t, got), contents(t, src))
	for _, table := range []string{"articles_fts", "articles_ext", "by_view"} {
		for _, q := range matches {
			if g, w := matchRowids(t, got, table, q), matchRowids(t, src, table, q); !slices.Equal(g, w) {
				t.Errorf("%s MATCH %q = %v, want %v", table, q, g, w)
			}
		}
	}
	var n int
	if err := got.QueryRow(`SELECT count(*) FROM articles_cl`).Scan(&n); err != nil || n != 0 {
		t.Errorf("contentless table: %d rows (%v), want recreated empty", n, err)
	}
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "articles_cl") || !strings.Contains(st.Warnings[0], "contentless") {
		t.Errorf("warnings %q, want one about the contentless table", st.Warnings)
	}
	text := string(dump)
	for _, shadow := range []string{"_data", "_idx", "_content", "_docsize", "_config"} {
		if strings.Contains(text, `INSERT INTO "articles_fts`+shadow) || strings.Contains(text, "CREATE TABLE 'articles_fts"+shadow) {
			t.Errorf("dump writes the shadow table articles_fts%s", shadow)
		}
	}
	// Order: the content table and its rows, then the FTS5 tables, the
	// trigger that would double its rows only afterwards, 'rebuild' last.
	order := []string{"CREATE TABLE articles", `INSERT INTO "articles"`, "CREATE VIRTUAL TABLE articles_fts",
		`INSERT INTO "articles_fts"(rowid,"title","body") VALUES(7,`, "CREATE VIRTUAL TABLE vocab", "CREATE VIEW docs_view",
		"CREATE TRIGGER articles_ai", `INSERT INTO "articles_ext"("articles_ext") VALUES('rebuild');`, `INSERT INTO "by_view"("by_view") VALUES('rebuild');`}
	last := -1
	for _, s := range order {
		i := strings.Index(text, s)
		if i < last {
			t.Errorf("%q at %d, want after %d\n%s", s, i, last, text)
		}
		last = i
	}
}

func TestProgressAndRateLimit(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	db := emu.MustCreate(t, "sample", d1emu.SampleSQL)
	emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointRaw, Kind: d1emu.FaultRateLimit, RetryAfter: 7, Times: 2, After: 3})
	emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointRaw, Kind: d1emu.FaultServerError, After: 5})
	var (
		slept []time.Duration
		prog  []querydump.Progress
	)
	opts := querydump.DefaultOptions()
	opts.Sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	opts.Progress = func(p querydump.Progress) { prog = append(prog, p) }
	dump, st := write(t, client(t, emu), db.UUID, opts)
	same(t, "sample", contents(t, load(t, dump)), contents(t, source(t, emu, db.UUID)))
	if got, want := slept, []time.Duration{7 * time.Second, 7 * time.Second, time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v (Retry-After twice, then a backoff after the 5xx)", got, want)
	}
	if len(prog) == 0 {
		t.Fatal("no progress")
	}
	end := prog[len(prog)-1]
	if end.TablesDone != end.Tables || end.Tables != 4 || end.Rows != st.Rows || end.Bytes != st.Bytes {
		t.Errorf("last progress %+v, want every table (4, sqlite_sequence included), %d rows, %d bytes", end, st.Rows, st.Bytes)
	}
}

// tamper passes requests to a real D1 and edits the answers, the way a
// broken or hostile API could answer.
type tamper struct {
	api  querydump.API
	edit func(sql string, res []d1.Rows) []d1.Rows
}

func (t tamper) Raw(ctx context.Context, id, sql string) ([]d1.Rows, error) {
	res, err := t.api.Raw(ctx, id, sql)
	if err == nil {
		res = t.edit(sql, res)
	}
	return res, err
}

func TestHostileAnswers(t *testing.T) {
	isSchema := func(sql string) bool {
		return strings.HasPrefix(sql, "SELECT type, name, tbl_name, sql FROM sqlite_schema")
	}
	isPage := func(sql string) bool { return strings.Contains(sql, "ORDER BY") && strings.Contains(sql, `FROM "v"`) }
	for _, tt := range []struct {
		name string
		edit func(sql string, res []d1.Rows) []d1.Rows
		want any
	}{
		{"a second statement in the schema", func(sql string, res []d1.Rows) []d1.Rows {
			if isSchema(sql) {
				for _, r := range res[0].Rows {
					if r[1] == "v" {
						r[3] = "CREATE TABLE v (id INTEGER PRIMARY KEY, x); ATTACH DATABASE '/tmp/pwned' AS p"
					}
				}
			}
			return res
		}, new(*d1.BadAnswerError)},
		{"a trigger that runs on past its END", func(sql string, res []d1.Rows) []d1.Rows {
			if isSchema(sql) {
				res[0].Rows = append(res[0].Rows, []any{"trigger", "t", "v", "CREATE TRIGGER t AFTER INSERT ON v BEGIN SELECT 1; END; DROP TABLE v; CREATE TRIGGER u AFTER INSERT ON v BEGIN SELECT 1; END"})
			}
			return res
		}, new(*d1.BadAnswerError)},
		{"a value that is SQL", func(sql string, res []d1.Rows) []d1.Rows {
			if isPage(sql) && len(res[0].Rows) > 0 {
				res[0].Rows[0][1] = "1,1); DROP TABLE v; --"
			}
			return res
		}, new(*d1.BadAnswerError)},
		{"a value that is a number, not a literal", func(sql string, res []d1.Rows) []d1.Rows {
			if isPage(sql) && len(res[0].Rows) > 0 {
				res[0].Rows[0][1] = 42.0
			}
			return res
		}, new(*d1.BadAnswerError)},
		{"rowids that do not move on", func(sql string, res []d1.Rows) []d1.Rows {
			if isPage(sql) && len(res[0].Rows) > 1 {
				res[0].Rows[1][0] = res[0].Rows[0][0]
			}
			return res
		}, new(*d1.BadAnswerError)},
		{"a rowid that is not an integer", func(sql string, res []d1.Rows) []d1.Rows {
			if isPage(sql) && len(res[0].Rows) > 0 {
				res[0].Rows[0][0] = "'1'"
			}
			return res
		}, new(*d1.BadAnswerError)},
		{"a virtual table D1 does not have", func(sql string, res []d1.Rows) []d1.Rows {
			if isSchema(sql) {
				res[0].Rows = append(res[0].Rows, []any{"table", "r", "r", "CREATE VIRTUAL TABLE r USING rtree(id, a, b)"})
			}
			return res
		}, new(*querydump.UnsupportedError)},
		{"an answer missing", func(sql string, res []d1.Rows) []d1.Rows { return res[:0] }, new(*d1.BadAnswerError)},
		{"a chunk that is not hex", func(sql string, res []d1.Rows) []d1.Rows {
			if strings.Contains(sql, "hex(substr(") {
				res[0].Rows[0][2] = "ZZ"
			}
			return res
		}, new(*d1.BadAnswerError)},
		{"a value larger than D1 allows", func(sql string, res []d1.Rows) []d1.Rows {
			if strings.Contains(sql, "UNION ALL") && !strings.Contains(sql, "hex(") {
				for _, r := range res[0].Rows {
					if r[1] == "blob" {
						r[2] = float64(1 << 40)
					}
				}
			}
			return res
		}, new(*d1.BadAnswerError)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			emu := d1emutest.Start(t, d1emu.Options{})
			db := emu.MustCreate(t, "values", values)
			opts := querydump.DefaultOptions()
			opts.RowBytes = 1 // every row column by column too
			var b bytes.Buffer
			_, err := querydump.Write(context.Background(), tamper{client(t, emu), tt.edit}, db.UUID, &b, opts)
			if err == nil || !errors.As(err, tt.want) {
				t.Fatalf("Write = %v, want %T", err, tt.want)
			}
			for _, bad := range []string{"ATTACH", "DROP TABLE", "rtree", "42"} {
				if strings.Contains(b.String(), bad) {
					t.Errorf("dump holds %q from the answer", bad)
				}
			}
		})
	}
}

// TestWideTable: D1's widest table (100 columns) within its limits on
// result columns, statement size and expression depth, row by row and
// column by column.
func TestWideTable(t *testing.T) {
	var cols, vals []string
	for i := range 100 {
		cols = append(cols, fmt.Sprintf(`"column number %d with a long name"`, i))
		vals = append(vals, fmt.Sprintf("'value %d'", i))
	}
	seed := "CREATE TABLE wide (" + strings.Join(cols, ", ") + ");\n" +
		"INSERT INTO wide VALUES (" + strings.Join(vals, ", ") + "), (" + strings.Join(vals, ", ") + ");"
	for _, rowBytes := range []int{querydump.DefaultRowBytes, 1} {
		emu := d1emutest.Start(t, d1emu.Options{})
		db := emu.MustCreate(t, "wide", seed)
		opts := querydump.DefaultOptions()
		opts.RowBytes = rowBytes
		dump, _ := write(t, client(t, emu), db.UUID, opts)
		same(t, "wide", contents(t, load(t, dump)), contents(t, source(t, emu, db.UUID)))
	}
}

// TestLargeRows: values near D1's 2 MB limit, whose literals no single
// answer value can hold, come back exact (read in chunks).
func TestLargeRows(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	db := emu.MustCreate(t, "large", `CREATE TABLE big (id INTEGER PRIMARY KEY, v);
INSERT INTO big (v) VALUES (randomblob(1900000)), (replace(hex(randomblob(600000)), 'A', 'é')), ('small');`)
	dump, st := write(t, client(t, emu), db.UUID, querydump.DefaultOptions())
	same(t, "large", contents(t, load(t, dump)), contents(t, source(t, emu, db.UUID)))
	if st.Rows != 3 {
		t.Errorf("%d rows, want 3", st.Rows)
	}
}
