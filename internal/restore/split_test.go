package restore_test

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/d1backup/d1backup/internal/restore"
)

func split(t *testing.T, sql string) ([]restore.Statement, error) {
	t.Helper()
	var out []restore.Statement
	// One byte per read: state must survive every buffer boundary.
	err := restore.Split(iotest.OneByteReader(strings.NewReader(sql)), func(s restore.Statement) error {
		s.Text = append([]byte(nil), s.Text...)
		out = append(out, s)
		return nil
	})
	return out, err
}

func TestSplit(t *testing.T) {
	t.Parallel()
	trigger := "CREATE TRIGGER tr BEFORE INSERT ON t BEGIN SELECT CASE WHEN new.qty < 0 THEN RAISE(ABORT,'x') END; END;"
	for _, tt := range []struct {
		name string
		sql  string
		want []string // statement texts
	}{
		{"dump head", "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (a);\n", []string{"PRAGMA defer_foreign_keys=TRUE;", "CREATE TABLE t (a);"}},
		{"quotes and escapes", `INSERT INTO "t;x" VALUES('a;''b;', "c;", ` + "`d;`" + `, [e;]);` + "\nSELECT 1;",
			[]string{`INSERT INTO "t;x" VALUES('a;''b;', "c;", ` + "`d;`" + `, [e;]);`, "SELECT 1;"}},
		{"newline escape", `INSERT INTO t VALUES(replace('a\nb;','\n',char(10)));`, []string{`INSERT INTO t VALUES(replace('a\nb;','\n',char(10)));`}},
		{"comments", "-- head; here\nSELECT 1; /* a; b */ SELECT 2 -- tail;\n;\n-- only a comment;\n", []string{"-- head; here\nSELECT 1;", "/* a; b */ SELECT 2 -- tail;\n;"}},
		{"trigger body", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n=n+1; DELETE FROM v; END;\nSELECT 1;",
			[]string{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n=n+1; DELETE FROM v; END;", "SELECT 1;"}},
		{"trigger with CASE ... END;", trigger + "\nINSERT INTO t VALUES(1);", []string{trigger, "INSERT INTO t VALUES(1);"}},
		{"temp trigger", "create temp trigger x before delete on t begin select 1; end ;", []string{"create temp trigger x before delete on t begin select 1; end ;"}},
		// SQLite's white space is space, \t, \n, \f and \r: END\f; ends the
		// trigger, END\v; does not (\v is no white space to SQLite).
		{"form feed before END's ;", "CREATE TRIGGER t1 AFTER INSERT ON t BEGIN SELECT 1;\fEND\f;COMMIT;VACUUM;",
			[]string{"CREATE TRIGGER t1 AFTER INSERT ON t BEGIN SELECT 1;\fEND\f;", "COMMIT;", "VACUUM;"}},
		{"vertical tab", "CREATE TRIGGER t1 AFTER INSERT ON t BEGIN SELECT 1; END\v; END;x;",
			[]string{"CREATE TRIGGER t1 AFTER INSERT ON t BEGIN SELECT 1; END\v; END;", "x;"}},
		{"END and BEGIN in strings, identifiers, comments", `CREATE TRIGGER "END;" AFTER INSERT ON [BEGIN;] BEGIN SELECT 'END;', "; END;" /* ; END; */; -- ; END;` + "\nEND;SELECT 2;",
			[]string{`CREATE TRIGGER "END;" AFTER INSERT ON [BEGIN;] BEGIN SELECT 'END;', "; END;" /* ; END; */; -- ; END;` + "\nEND;", "SELECT 2;"}},
		{"explain create trigger", "EXPLAIN CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END; SELECT 3;", []string{"EXPLAIN CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;", "SELECT 3;"}},
		{"blob and unicode", "INSERT INTO \"ünï\" VALUES(X'3B00FF', 'жи;ви', '🙂;');SELECT 1;", []string{"INSERT INTO \"ünï\" VALUES(X'3B00FF', 'жи;ви', '🙂;');", "SELECT 1;"}},
		{"view", "CREATE VIEW v AS SELECT ';' AS a FROM t;CREATE INDEX i ON t(a);", []string{"CREATE VIEW v AS SELECT ';' AS a FROM t;", "CREATE INDEX i ON t(a);"}},
		{"no final semicolon", "SELECT 1;\nSELECT 2\n", []string{"SELECT 1;", "SELECT 2"}},
		{"empty statements", ";;\n ; SELECT 1;", []string{"SELECT 1;"}},
		{"transaction", "BEGIN TRANSACTION;\nCOMMIT;", []string{"BEGIN TRANSACTION;", "COMMIT;"}},
		{"minus and slash", "SELECT 4-1/2;", []string{"SELECT 4-1/2;"}},
		{"trailing comments", "SELECT 1;\n-- done\n/* really */\n", []string{"SELECT 1;"}},
	} {
		got, err := split(t, tt.sql)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		var texts []string
		for i, s := range got {
			texts = append(texts, string(s.Text))
			if s.Index != int64(i+1) || s.Size != int64(len(s.Text)) || !strings.HasPrefix(tt.sql[s.Offset:], string(s.Text)) {
				t.Errorf("%s: statement %d: index %d offset %d size %d do not locate %q", tt.name, i+1, s.Index, s.Offset, s.Size, s.Text)
			}
		}
		if got, want := strings.Join(texts, "|"), strings.Join(tt.want, "|"); got != want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, want)
		}
	}
}

func TestSplitErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, sql string
		want      string
		stmt, off int64
	}{
		{"unterminated string", "SELECT 1; SELECT 'unterminated;", "ends inside a quoted string", 2, 9},
		{"unterminated comment", "SELECT 1;\n/* open; ", "ends inside a quoted string", 2, 9},
		{"NUL byte", "SELECT 1; SELECT 'a\x00b';", "NUL byte", 2, 19},
		{"statement too long", "SELECT 1;\nSELECT '" + strings.Repeat("x", restore.MaxLoadStatementBytes) + "';", "over 8388608 bytes", 2, 9},
	} {
		var se *restore.SplitError
		_, err := split(t, tt.sql)
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.want) || se.Statement != tt.stmt || se.Offset != tt.off {
			t.Errorf("%s: got %v, want a SplitError for statement %d at byte %d saying %q", tt.name, err, tt.stmt, tt.off, tt.want)
		}
	}
	stop := errors.New("stop here")
	n := 0
	err := restore.Split(strings.NewReader("SELECT 1; SELECT 2;"), func(restore.Statement) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("callback error: got %v after %d statements, want it returned after 1", err, n)
	}
}
