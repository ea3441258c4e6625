package d1emu_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
)

// TestFTS5 covers the three kinds of FTS5 table: D1 refuses to export the
// database; the query API reads what each kind lets one read back.
func TestFTS5(t *testing.T) {
	const articles = `[[1,"Nightly backups","Every database, every night."],[2,"O'Brien's notes","Line one\nline two; with a semicolon"],[3,"Zoë and ★",null],[7,"A gap in the ids","rowid 7 follows rowid 3"]]`
	tests := []struct {
		kind  d1emu.FTS5Kind
		table string
		read  string // SELECT rowid, title, body FROM table
	}{
		{d1emu.FTS5Contentful, "articles_fts", articles},
		{d1emu.FTS5External, "articles_ext", articles},
		{d1emu.FTS5Contentless, "articles_cl", `[[1,null,null],[2,null,null],[3,null,null],[7,null,null]]`},
	}
	for _, polls := range []int{0, 2} {
		emu := d1emutest.Start(t, d1emu.Options{ExportPolls: polls})
		e := &emu2{t: t, Emulator: emu}
		for _, tt := range tests {
			db := emu.MustCreateFTS5(t, fmt.Sprint(tt.kind, "-", polls), tt.kind)
			if res := e.runExport(db.UUID); res.Status != "error" || res.Error != "cannot export databases with Virtual Tables (fts5)" || res.Result != nil {
				t.Errorf("%s: export %+v, want status error", tt.kind, res)
			}
			if _, err := emu.WriteDump(context.Background(), db.UUID, io.Discard); err == nil || !strings.Contains(err.Error(), "Virtual Tables (fts5)") {
				t.Errorf("%s: WriteDump: %v", tt.kind, err)
			}
			if got := e.rows(db.UUID, "SELECT rowid, title, body FROM "+tt.table+" ORDER BY rowid"); got != tt.read {
				t.Errorf("%s: rows %s, want %s", tt.kind, got, tt.read)
			}
			if got := e.rows(db.UUID, "SELECT rowid FROM "+tt.table+" WHERE "+tt.table+" MATCH 'semicolon'"); got != "[[2]]" {
				t.Errorf("%s: MATCH: %s", tt.kind, got)
			}
		}
	}
	emu := d1emutest.Start(t, d1emu.Options{})
	all := emu.MustCreateFTS5(t, "all")
	e := &emu2{t: t, Emulator: emu}
	if got := e.rows(all.UUID, "SELECT name FROM sqlite_schema WHERE sql LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name"); got != `[["articles_cl"],["articles_ext"],["articles_fts"]]` {
		t.Errorf("every kind: virtual tables %s", got)
	}
}

// emu2 drives a d1emutest emulator over HTTP with the package's helpers.
type emu2 struct {
	*d1emutest.Emulator
	t *testing.T
}

func (e *emu2) inner() *emu {
	return &emu{Server: e.Server, t: e.t, srv: e.HTTP, hc: e.HTTP.Client()}
}

func (e *emu2) runExport(id string) exportResult { return e.inner().runExport(id) }

func (e *emu2) rows(id, sql string) string { return e.inner().mustQuery(id, sql)[0] }
