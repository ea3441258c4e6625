package restore_test

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/d1backup/d1backup/internal/restore"
)

func split(t *testing.T, sql string, keep int) ([]restore.Statement, error) {
	t.Helper()
	var out []restore.Statement
	// One byte per read: state must survive every buffer boundary.
	err := restore.Split(iotest.OneByteReader(strings.NewReader(sql)), keep, func(s restore.Statement) error {
		s.Text = append([]byte(nil), s.Text...)
		out = append(out, s)
		return nil
	})
	return out, err
}

func TestSplit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		sql  string
		want []string // statement texts
		kw   []string
	}{
		{"dump head", "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (a);\n", []string{"PRAGMA defer_foreign_keys=TRUE;", "CREATE TABLE t (a);"}, []string{"PRAGMA", "CREATE"}},
		{"quotes and escapes", `INSERT INTO "t;x" VALUES('a;''b;', "c;", ` + "`d;`" + `, [e;]);` + "\nSELECT 1;",
			[]string{`INSERT INTO "t;x" VALUES('a;''b;', "c;", ` + "`d;`" + `, [e;]);`, "SELECT 1;"}, []string{"INSERT", "SELECT"}},
		{"newline escape", `INSERT INTO t VALUES(replace('a\nb;','\n',char(10)));`, []string{`INSERT INTO t VALUES(replace('a\nb;','\n',char(10)));`}, []string{"INSERT"}},
		{"comments", "-- head; here\nSELECT 1; /* a; b */ SELECT 2 -- tail;\n;\n-- only a comment;\n", []string{"-- head; here\nSELECT 1;", "/* a; b */ SELECT 2 -- tail;\n;"}, []string{"SELECT", "SELECT"}},
		{"trigger body", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n=n+1; DELETE FROM v; END;\nSELECT 1;",
			[]string{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n=n+1; DELETE FROM v; END;", "SELECT 1;"}, []string{"CREATE", "SELECT"}},
		{"temp trigger", "create temp trigger x before delete on t begin select 1; end ;", []string{"create temp trigger x before delete on t begin select 1; end ;"}, []string{"CREATE"}},
		{"no final semicolon", "SELECT 1;\nSELECT 2", []string{"SELECT 1;", "SELECT 2"}, []string{"SELECT", "SELECT"}},
		{"empty statements", ";;\n ; SELECT 1;", []string{"SELECT 1;"}, []string{"SELECT"}},
		{"transaction", "BEGIN TRANSACTION;\nCOMMIT;", []string{"BEGIN TRANSACTION;", "COMMIT;"}, []string{"BEGIN", "COMMIT"}},
		{"minus and slash", "SELECT 4-1/2;", []string{"SELECT 4-1/2;"}, []string{"SELECT"}},
	} {
		got, err := split(t, tt.sql, 1<<20)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		var texts, kws []string
		for _, s := range got {
			texts = append(texts, string(s.Text))
			kws = append(kws, s.Keyword)
			if int64(len(s.Text)) > s.Size || s.Offset < 0 || !strings.HasPrefix(tt.sql[s.Offset:], string(s.Text)) {
				t.Errorf("%s: statement %d: offset %d size %d do not locate %q", tt.name, s.Index, s.Offset, s.Size, s.Text)
			}
		}
		if got, want := strings.Join(texts, "|"), strings.Join(tt.want, "|"); got != want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, want)
		}
		if got, want := strings.Join(kws, ","), strings.Join(tt.kw, ","); got != want {
			t.Errorf("%s: keywords %q, want %q", tt.name, got, want)
		}
	}
}

func TestSplitKeepLimitAndErrors(t *testing.T) {
	t.Parallel()
	big := "INSERT INTO t VALUES('" + strings.Repeat("x", 1000) + "');"
	got, err := split(t, "SELECT 1;"+big, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Text != nil || got[1].Size != int64(len(big)) || string(got[0].Text) != "SELECT 1;" {
		t.Errorf("got %+v, want the long statement measured (%d bytes) without text", got, len(big))
	}
	if _, err := split(t, "SELECT 'unterminated;", 100); err == nil {
		t.Error("unterminated string: no error")
	}
	stop := errors.New("stop here")
	err = restore.Split(strings.NewReader("SELECT 1; SELECT 2;"), 10, func(restore.Statement) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("callback error: got %v, want it returned", err)
	}
}
