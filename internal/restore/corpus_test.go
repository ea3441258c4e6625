package restore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/restore"
)

// corpus: dumps that are data, written to trip a splitter that disagrees
// with SQLite: trigger bodies with CASE ... END;, every white space byte
// SQLite knows before every ';', ';', END and BEGIN inside strings, quoted
// identifiers and comments, BLOBs, text with NUL, quotes, newlines and
// unicode, views, and the FTS5 statements of a query-API dump.
var corpus = map[string]string{
	"d1 dump": `PRAGMA defer_foreign_keys=TRUE;
CREATE TABLE "order; END" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "qty" INTEGER, "note;" TEXT, [BEGIN;] BLOB, ` + "`END`" + ` REAL);
INSERT INTO "order; END" ("id","qty","note;","BEGIN;","END") VALUES(1,5,'it''s; END; BEGIN',X'3B454E443B00FF',1.5);
INSERT INTO "order; END" ("id","qty","note;","BEGIN;","END") VALUES(2,-3,replace('line one;\nEND;\nBEGIN','\n',char(10)),NULL,-0.0);
INSERT INTO "order; END" ("id","qty","note;","BEGIN;","END") VALUES(3,9007199254740993,CAST(X'6100623B' AS TEXT),X'',1e308);
INSERT INTO "order; END" VALUES(4,7,'Zoë ★ 🙂 жи;ви',X'00',9.0e+999);
DELETE FROM sqlite_sequence;
INSERT INTO "sqlite_sequence" VALUES('order; END',4);
ANALYZE sqlite_schema;
INSERT INTO sqlite_stat1 VALUES('order; END','by_qty','4 1');
CREATE INDEX "by_qty" ON "order; END" ("qty");
CREATE TRIGGER "guard;" BEFORE INSERT ON "order; END" BEGIN SELECT CASE WHEN new."qty" < 0 THEN RAISE(ABORT,'no; END;') END; END;
CREATE TRIGGER t2 AFTER INSERT ON "order; END" BEGIN
  SELECT CASE WHEN 1 THEN 'END;' END /* ; END; */; -- ; END;
  SELECT 2;
END;
CREATE VIEW "v;" AS SELECT "qty" AS "END;" FROM "order; END" WHERE "note;" <> ';';
`,
	"white space": "CREATE TABLE t (a)\t;\rINSERT INTO t VALUES(1)\r\n;\fINSERT INTO t VALUES('\f;\v;') \t\n\f\r;/* c */INSERT INTO t VALUES(2) -- c\n;\nINSERT INTO t VALUES(X'0B3B')\n;CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1\t;\n\f\rEND\f;CREATE TRIGGER tr2 AFTER INSERT ON t BEGIN SELECT 2;END;",
	"fts5": `CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO docs VALUES(1, 'full; text END;');
INSERT INTO docs VALUES(2, 'search BEGIN;');
CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
INSERT INTO docs_fts(docs_fts) VALUES('rebuild');
CREATE VIRTUAL TABLE notes USING fts5(title, body, tokenize = 'porter unicode61');
INSERT INTO notes(rowid, title, body) VALUES(10, 'a; END;', 'b');
INSERT INTO notes(rowid, title, body) VALUES(11, 'c', replace('d\ne','\n',char(10)));
`,
	"no final semicolon": "CREATE TABLE t (a);\nINSERT INTO t VALUES(';')\n-- trailing comment",
}

// TestCorpusLoadsAsSQLiteDoes loads each dump statement by statement, as
// restore does, and compares every value and the schema with SQLite
// loading the whole file in one call; then restores it into D1 (the
// emulator), whose pre-checks use the same splitter.
func TestCorpusLoadsAsSQLiteDoes(t *testing.T) {
	t.Parallel()
	world := newWorld(t)
	st, tmp := world.store, world.dir
	for name, dump := range corpus {
		t.Run(name, func(t *testing.T) {
			want := filepath.Join(tmp, strings.ReplaceAll(name, " ", "-")+".want.sqlite")
			db, err := sql.Open("sqlite", want)
			if err != nil {
				t.Fatal(err)
			}
			// One transaction, as restore loads: fts5 lays out its index
			// by transaction.
			if _, err := db.Exec("BEGIN;\n" + dump + "\n;COMMIT;"); err != nil {
				t.Fatalf("SQLite loading the whole file: %v", err)
			}
			db.Close()

			key := testKey("c-"+name, "none")
			putBackup(t, st, key, dump)
			got := filepath.Join(tmp, strings.ReplaceAll(name, " ", "-")+".got.sqlite")
			if _, err := restore.ToSQLite(context.Background(), restore.Source{Store: st, Key: key}, got, false, restore.Options{TempDir: tmp}); err != nil {
				t.Fatal(err)
			}
			g, w := exactContents(t, got), exactContents(t, want)
			if len(w) < 2 {
				t.Fatalf("the reference holds %v: nothing to compare", w)
			}
			if !slices.Equal(g, w) {
				t.Errorf("statement by statement:\n%s\nwhole file:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
			rep, err := restore.Verify(context.Background(), restore.Source{Store: st, Key: key}, restore.Options{TempDir: tmp})
			if err != nil || !rep.OK || len(rep.Warnings) > 0 {
				t.Errorf("verify: %v, warnings %q", err, rep.Warnings)
			}
			res, err := restore.ToD1(context.Background(), world.api, restore.Source{Store: st, Key: key}, restore.Target{Create: strings.ReplaceAll(name, " ", "-")}, world.opts())
			if err != nil {
				t.Fatalf("into D1: %v", err)
			}
			if g := exactContents(t, world.dbPath(t, res.DatabaseID)); !slices.Equal(g, w) {
				t.Errorf("D1 import:\n%s\nwhole file:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		})
	}
}

// exactContents lists the schema and every row of every table (fts5
// shadow tables included) as type and hex of each value, sorted.
func exactContents(t *testing.T, path string) []string {
	t.Helper()
	db := openRO(t, path)
	out := query(t, db, `SELECT type||' '||name||' '||coalesce(sql,'') FROM sqlite_schema ORDER BY name`)
	for _, tb := range query(t, db, `SELECT name FROM sqlite_schema WHERE type='table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name`) {
		q := `"` + strings.ReplaceAll(tb, `"`, `""`) + `"`
		cols := query(t, db, `SELECT 'typeof("'||replace(name,'"','""')||'")||'':''||hex("'||replace(name,'"','""')||'")' FROM pragma_table_info('`+strings.ReplaceAll(tb, "'", "''")+`')`)
		rows := query(t, db, `SELECT '`+strings.ReplaceAll(tb, "'", "''")+`: '||`+strings.Join(cols, "||' '||")+` FROM `+q)
		slices.Sort(rows)
		out = append(out, rows...)
	}
	return out
}
