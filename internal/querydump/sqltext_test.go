package querydump

import (
	"strings"
	"testing"
)

// These checks stand between an API answer and a dump that restore runs:
// each case is something a hostile or broken answer could send.
func TestCheckCreate(t *testing.T) {
	for _, tt := range []struct {
		sql, kind string
		ok        bool
	}{
		{`CREATE TABLE t (a TEXT DEFAULT 'x;y', "b;" INT)`, createTable, true},
		{`CREATE TABLE t (a) -- note` + "\n", createTable, true},
		{`CREATE TABLE t (a /* ; */)`, createTable, true},
		{`create unique index i on t(a)`, createIndex, true},
		{`CREATE VIEW v AS SELECT ';' FROM t`, createView, true},
		{`CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = n + 1; DELETE FROM v; END`, createTrigger, true},
		{`CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = CASE WHEN new.a THEN 1 ELSE 2 END; SELECT 1; END`, createTrigger, true},
		{`CREATE VIRTUAL TABLE f USING fts5(a, content='')`, createVirtual, true},

		{`CREATE TABLE t (a); ATTACH DATABASE '/tmp/x' AS x`, createTable, false},
		{`CREATE TABLE t (a);`, createTable, false},
		{`CREATE TABLE t (a) /* open`, createTable, false},
		{`CREATE TABLE t (a) -- eats the ';'`, createTable, false},
		{`CREATE TABLE t (a, b TEXT DEFAULT 'open)`, createTable, false},
		{`CREATE TABLE t ("a)`, createTable, false},
		{"CREATE TABLE t (a)\x00; DROP TABLE u", createTable, false},
		{`ATTACH DATABASE 'x' AS y`, createTable, false},
		{`CREATE INDEX i ON t(a)`, createTable, false},
		{`CREATE TEMP TABLE t (a)`, createTable, false},
		{`CREATE VIEW v AS SELECT 1; PRAGMA writable_schema=ON`, createView, false},
		{`CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; ATTACH 'x' AS y; CREATE TRIGGER z AFTER INSERT ON t BEGIN SELECT 1; END`, createTrigger, false},
		{`CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1;`, createTrigger, false},
		{`CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;`, createTrigger, false},
		{`CREATE`, createTable, false},
	} {
		_, err := checkCreate(tt.sql, tt.kind)
		if got := err == nil; got != tt.ok {
			t.Errorf("checkCreate(%q, %s) = %v, want ok %v", tt.sql, tt.kind, err, tt.ok)
		}
	}
}

func TestCheckLiterals(t *testing.T) {
	for _, tt := range []struct {
		s  string
		n  int
		ok bool
	}{
		{`NULL`, 1, true},
		{`9223372036854775807,-9223372036854775808,0.1,1.0e+308,9.0e+999,-9.0e+999,2.5e-300`, 7, true},
		{`'it''s','a` + "\n" + `b','',X'00FF',X'',CAST(X'610062' AS TEXT)`, 6, true},
		{`'Zoë ★'`, 1, true},

		{`1`, 2, false},
		{`1,2`, 1, false},
		{`1); DROP TABLE t; --`, 1, false},
		{`'a'); DROP TABLE t; --'`, 1, false},
		{`'open`, 1, false},
		{`X'0F0'`, 1, false},
		{`X'GG'`, 1, false},
		{`CAST(X'61' AS BLOB)`, 1, false},
		{`1e`, 1, false},
		{`.5`, 1, false},
		{`abs(1)`, 1, false},
		{"'a\x00b'", 1, false},
		{`NULL,`, 1, false},
		{``, 1, false},
	} {
		err := checkLiterals(tt.s, tt.n)
		if got := err == nil; got != tt.ok {
			t.Errorf("checkLiterals(%q, %d) = %v, want ok %v", tt.s, tt.n, err, tt.ok)
		}
	}
	for s, ok := range map[string]bool{"1": true, "-42": true, "9223372036854775807": true, "1.0": false, "": false, "-": false, "1 OR 1": false, strings.Repeat("9", 21): false} {
		if got := checkInteger(s) == nil; got != ok {
			t.Errorf("checkInteger(%q) ok = %v, want %v", s, got, ok)
		}
	}
}

func TestModuleArgs(t *testing.T) {
	for _, tt := range []struct {
		sql, content, table string
	}{
		{`CREATE VIRTUAL TABLE f USING fts5(a, b)`, contentOwn, ""},
		{`CREATE VIRTUAL TABLE f USING fts5(a, b, content='')`, contentNone, ""},
		{`CREATE VIRTUAL TABLE f USING fts5(a, b, content="")`, contentNone, ""},
		{`CREATE VIRTUAL TABLE "f" USING FTS5(a, tokenize = 'porter unicode61', Content = 'it''s', content_rowid='id')`, contentExternal, "it's"},
		{`CREATE VIRTUAL TABLE f USING fts5(a, content=[docs])`, contentExternal, "docs"},
		{`CREATE VIRTUAL TABLE f USING fts5(a, tokenize="unicode61 remove_diacritics 2", content = docs, contentless_delete=0)`, contentExternal, "docs"},
	} {
		v, err := parseVirtual(object{typ: "table", name: "f", sql: tt.sql})
		if err != nil || v.content != tt.content || v.contentTable != tt.table || v.module != moduleFTS5 {
			t.Errorf("parseVirtual(%q) = %q %q %q (%v), want fts5 %q %q", tt.sql, v.module, v.content, v.contentTable, err, tt.content, tt.table)
		}
	}
}
