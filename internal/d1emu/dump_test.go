package d1emu_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
)

const fixtureSQL = `
CREATE TABLE people (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  manager INTEGER REFERENCES people(id),
  photo BLOB,
  score REAL,
  born DATE
);
-- a forward reference: only valid because the import defers foreign keys
INSERT INTO people VALUES (1, 'Ann O''Neil', NULL, X'00FF10', 1.5, '1990-01-02');
INSERT INTO people VALUES (2, 'Bob' || char(10) || '"Bobby"' || char(13,10) || 'Jr.', NULL, NULL, NULL, '1985-12-31');
INSERT INTO people VALUES (3, 'Zoë 😀 ✓', NULL, X'', -0.1, NULL);
INSERT INTO people VALUES (4, 'literal \n then ' || char(10), 1, NULL, 1e300, 20240101);
INSERT INTO people VALUES (5, 'gone', NULL, NULL, NULL, NULL);
DELETE FROM people WHERE id = 5;
UPDATE people SET manager = 3 WHERE id = 1;
CREATE TABLE "odd ""name""" ("a b" TEXT, [c] INTEGER, g INTEGER GENERATED ALWAYS AS (c * 2) VIRTUAL);
INSERT INTO "odd ""name""" ("a b", c) VALUES ('x', 9223372036854775807), ('y', -9223372036854775808), (NULL, 0);
DELETE FROM "odd ""name""" WHERE "a b" = 'x';
INSERT INTO "odd ""name""" ("a b", c) VALUES ('z', 1);
CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
INSERT INTO kv VALUES ('real-int', 2.0), ('tiny', 5e-324), ('third', 1.0 / 3), ('big-real', 1e20),
  ('nul', 'a' || char(0) || 'b'), ('blob', X'DEADBEEF'), ('empty', ''), ('quote', ''''), ('neg', -42);
CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB);
INSERT INTO _cf_KV VALUES ('internal', X'01');
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, person INTEGER NOT NULL REFERENCES people(id), what TEXT);
INSERT INTO audit (person, what) VALUES (1, 'created'), (3, 'created');
CREATE INDEX people_by_name ON people(name);
CREATE VIEW named AS SELECT id, name FROM people WHERE name != '';
CREATE TRIGGER people_audit AFTER INSERT ON people BEGIN INSERT INTO audit (person, what) VALUES (NEW.id, 'created'); END;
CREATE INDEX audit_by_person ON audit(person);
`

func TestDumpRoundTrip(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	src := e.mustCreate("fixture", fixtureSQL)
	dump := e.dump(src.UUID)

	imported := importDump(t, dump)
	if rows := rowsOfQuery(t, imported, `SELECT count(*) FROM pragma_foreign_key_check`); rows[0] != "0" {
		t.Errorf("foreign key violations after import: %v", rows)
	}
	path, err := e.DBPath(src.UUID)
	if err != nil {
		t.Fatal(err)
	}
	orig := openDB(t, path)
	for _, table := range []string{"people", `odd "name"`, "kv", "audit", "sqlite_sequence"} {
		got, want := rowsOf(t, imported, table), rowsOf(t, orig, table)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("table %s after import:\n got %q\nwant %q", table, got, want)
		}
	}
	if got := rowsOfQuery(t, imported, `SELECT count(*) FROM sqlite_schema WHERE name = '_cf_KV'`); got[0] != "0" {
		t.Errorf("_cf_KV was exported")
	}

	// The dump of the re-imported database is the same, byte for byte.
	imported.Close()
	again, err := e.AddDatabaseFile("reimported", importedPath(t, dump))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.dump(again.UUID); got != dump {
		t.Errorf("dump after re-import differs:\n got %s\nwant %s", got, dump)
	}
}

func importedPath(t *testing.T, dump string) string {
	t.Helper()
	db := importDump(t, dump)
	var path string
	if err := db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	db.Close()
	return path
}

func TestDumpStructure(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("fixture", fixtureSQL+"ANALYZE;")
	dump := e.dump(db.UUID)
	lines := strings.Split(strings.TrimSuffix(dump, "\n"), "\n")
	if !strings.HasSuffix(dump, ";\n") {
		t.Errorf("dump does not end with ;\\n: %q", dump[len(dump)-20:])
	}
	if lines[0] != "PRAGMA defer_foreign_keys=TRUE;" {
		t.Errorf("first line = %q", lines[0])
	}
	for _, bad := range []string{"\nBEGIN;", "\nBEGIN TRANSACTION", "\nCOMMIT", "_cf_KV", "CREATE TABLE sqlite_", "sqlite_stat4"} {
		if strings.Contains(dump, bad) {
			t.Errorf("dump contains %q", bad)
		}
	}
	// Order: tables with their rows (sqlite_sequence last), then indexes,
	// views, triggers in schema order.
	var got []string
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "CREATE "), strings.HasPrefix(l, "DELETE "), strings.HasPrefix(l, "ANALYZE "):
			f := strings.Fields(l)
			got = append(got, strings.Join(f[:min(3, len(f))], " "))
		case strings.HasPrefix(l, "INSERT INTO "):
			name := strings.Fields(l)[2]
			if len(got) == 0 || got[len(got)-1] != "rows "+name {
				got = append(got, "rows "+name)
			}
		}
	}
	want := []string{
		"CREATE TABLE people", `rows "people"`,
		`CREATE TABLE "odd`, `rows "odd`,
		"CREATE TABLE kv", `rows "kv"`,
		"CREATE TABLE audit", `rows "audit"`,
		"ANALYZE sqlite_schema;", `rows "sqlite_stat1"`,
		"DELETE FROM sqlite_sequence;", `rows "sqlite_sequence"`,
		"CREATE INDEX people_by_name", "CREATE VIEW named", "CREATE TRIGGER people_audit", "CREATE INDEX audit_by_person",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("statement order:\n got %q\nwant %q", got, want)
	}
	for _, want := range []string{
		`INSERT INTO "sqlite_sequence" ("name","seq") VALUES('people',5);`,
		`INSERT INTO "odd ""name""" ("a b","c") VALUES('y',-9223372036854775808);`,
		`INSERT INTO "people" ("id","name","manager","photo","score","born") VALUES(4,replace('literal \n then \012','\012',char(10)),1,NULL,1e+300,20240101);`,
	} {
		if !strings.Contains(dump, want+"\n") {
			t.Errorf("dump lacks line %s", want)
		}
	}
	importDump(t, dump) // ANALYZE sqlite_schema and stat rows import too
}

func TestDumpValues(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"null", "NULL", "NULL"},
		{"int", "42", "42"},
		{"negative int", "-7", "-7"},
		{"max int", "9223372036854775807", "9223372036854775807"},
		{"min int", "-9223372036854775808", "-9223372036854775808"},
		{"real", "1.5", "1.5"},
		{"integral real", "2.0", "2.0"},
		{"negative real", "-0.25", "-0.25"},
		{"tenth", "0.1", "0.1"},
		{"third", "1.0/3", "0.3333333333333333"},
		{"huge real", "1e300", "1e+300"},
		{"large integral real", "1e20", "1e+20"},
		{"text", "'hello'", "'hello'"},
		{"empty text", "''", "''"},
		{"quotes", `'it''s "x"'`, `'it''s "x"'`},
		{"unicode", "'Zoë ✓ 😀'", "'Zoë ✓ 😀'"},
		{"newline", "'a'||char(10)||'b'", `replace('a\nb','\n',char(10))`},
		{"crlf", "'a'||char(13,10)||'b'", `replace(replace('a\r\nb','\r',char(13)),'\n',char(10))`},
		{"literal backslash n", `'x\n'||char(10)`, `replace('x\n\012','\012',char(10))`},
		{"both tokens taken", `'\n \012'||char(10)`, `replace('\n \012(\n0)','(\n0)',char(10))`},
		{"quote and newline", "'it''s'||char(10)", `replace('it''s\n','\n',char(10))`},
		{"nul in text", "'a'||char(0)||'b'", "CAST(X'610062' AS TEXT)"},
		{"blob", "X'00ff7a'", "X'00FF7A'"},
		{"empty blob", "X''", "X''"},
		{"date text", "'2024-01-02'", "'2024-01-02'"},
	}
	e := newEmu(t, d1emu.Options{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := e.mustCreate(fmt.Sprint("v", i), "CREATE TABLE t (v); INSERT INTO t (v) VALUES ("+tt.sql+");")
			dump := e.dump(db.UUID)
			want := `INSERT INTO "t" ("v") VALUES(` + tt.want + ");\n"
			if !strings.Contains(dump, want) {
				t.Errorf("got dump\n%s\nwant line %s", dump, want)
			}
			// The literal reads back as the same value and type.
			imported := importDump(t, dump)
			path, _ := e.DBPath(db.UUID)
			got, want2 := rowsOfQuery(t, imported, "SELECT typeof(v)||':'||quote(v)||':'||hex(v) FROM t"), rowsOfQuery(t, openDB(t, path), "SELECT typeof(v)||':'||quote(v)||':'||hex(v) FROM t")
			if got[0] != want2[0] {
				t.Errorf("after import got %s, want %s", got[0], want2[0])
			}
		})
	}
}

func TestDumpVirtualTable(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("fts", "CREATE TABLE docs (body TEXT); CREATE VIRTUAL TABLE docs_fts USING fts5(body);")
	var b bytes.Buffer
	_, err := e.WriteDump(context.Background(), db.UUID, &b)
	if err == nil || !strings.Contains(err.Error(), "cannot export databases with Virtual Tables (fts5)") {
		t.Errorf("WriteDump error = %v, want the virtual table error", err)
	}
}

func TestSampleDump(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("sample", d1emu.SampleSQL)
	dump := e.dump(db.UUID)
	if n := strings.Count(dump, "INSERT INTO "); n < 300 {
		t.Errorf("sample has %d INSERTs, want a few hundred", n)
	}
	for _, want := range []string{"replace(", "X'89504E47", "O''Brien", "DELETE FROM sqlite_sequence;", "CREATE VIEW", "CREATE TRIGGER", "CREATE INDEX", "WITHOUT ROWID"} {
		if !strings.Contains(dump, want) {
			t.Errorf("sample dump lacks %q", want)
		}
	}
	if dump != e.dump(e.mustCreate("sample2", d1emu.SampleSQL).UUID) {
		t.Error("the sample is not deterministic")
	}
	importDump(t, dump)
}
