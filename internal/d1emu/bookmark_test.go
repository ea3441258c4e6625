package d1emu_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"

	"github.com/d1backup/d1backup/internal/d1emu"
)

func (e *emu) bookmarkAt(id string, at time.Time) response {
	e.t.Helper()
	return e.do("GET", e.dbURL(id)+"/time_travel/bookmark?timestamp="+url.QueryEscape(at.Format(time.RFC3339Nano)), e.Token(), nil)
}

// TestBookmarkFollowsWrites: every way of writing moves the bookmark
// forward; reads and repeated calls do not; a timestamp gives the
// bookmark of that time.
func TestBookmarkFollowsWrites(t *testing.T) {
	clk := newClock()
	e := newEmu(t, d1emu.Options{Now: clk.Now})
	db := e.mustCreate("app", smallSeed)
	created := clk.Now()
	clk.Advance(time.Minute)

	type step struct {
		at       time.Time
		bookmark string
	}
	history := []step{{created, e.bookmark(db.UUID)}}
	if again := e.bookmark(db.UUID); again != history[0].bookmark {
		t.Fatalf("unchanged database: bookmark %s, then %s", history[0].bookmark, again)
	}
	if exp := e.runExport(db.UUID).AtBookmark; exp != history[0].bookmark {
		t.Errorf("export at_bookmark %s, bookmark endpoint %s", exp, history[0].bookmark)
	}
	writes := []struct {
		name  string
		write func()
	}{
		{"query API", func() { e.mustQuery(db.UUID, "INSERT INTO users (name) VALUES (?)", "q") }},
		{"Exec", func() {
			if err := e.Exec(db.UUID, "INSERT INTO users (name) VALUES ('x')"); err != nil {
				t.Fatal(err)
			}
		}},
		{"control exec", func() {
			res, err := e.hc.Post(e.srv.URL+"/__emu/databases/"+db.Name+"/exec", "application/sql", strings.NewReader("DELETE FROM users WHERE name = 'x'"))
			if err != nil || res.StatusCode != http.StatusNoContent {
				t.Fatalf("control exec: %v %v", res, err)
			}
			res.Body.Close()
		}},
		{"import", func() {
			sql := []byte("CREATE TABLE imported (a);\nINSERT INTO imported VALUES (1);\n")
			_, init := e.importCall(db.UUID, map[string]any{"action": "init", "etag": md5hex(sql)})
			e.put(init.UploadURL, sql)
			_, ing := e.importCall(db.UUID, map[string]any{"action": "ingest", "etag": md5hex(sql), "filename": init.Filename})
			if _, p := e.importCall(db.UUID, map[string]any{"action": "poll", "current_bookmark": ing.AtBookmark}); p.Result == nil || p.Result.FinalBookmark != e.bookmark(db.UUID) {
				t.Errorf("import final bookmark %+v, bookmark endpoint %s", p.Result, e.bookmark(db.UUID))
			}
		}},
		{"behind the emulator's back", func() {
			path, _ := e.DBPath(db.UUID)
			if _, err := openDB(t, path).Exec("DELETE FROM imported"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, w := range writes {
		prev := history[len(history)-1].bookmark
		w.write()
		now := e.bookmark(db.UUID)
		if now <= prev {
			t.Errorf("%s: bookmark %s, not after %s", w.name, now, prev)
		}
		e.mustQuery(db.UUID, "SELECT * FROM users")
		if again := e.bookmark(db.UUID); again != now {
			t.Errorf("%s: a read moved the bookmark from %s to %s", w.name, now, again)
		}
		history = append(history, step{clk.Now(), now})
		clk.Advance(time.Minute)
	}

	for i, h := range history {
		for _, at := range []time.Time{h.at, h.at.Add(30 * time.Second)} {
			r := e.bookmarkAt(db.UUID, at)
			if got := bookmarkOf(r); got != h.bookmark {
				t.Errorf("at step %d (%s): bookmark %s, want %s", i, at.Format(time.RFC3339), got, h.bookmark)
			}
		}
	}
}

// bookmarkOf is the bookmark of an answer, or what went wrong.
func bookmarkOf(r response) string {
	var env struct{ Result struct{ Bookmark string } }
	if r.status != http.StatusOK || json.Unmarshal(r.body, &env) != nil {
		return fmt.Sprintf("HTTP %d %s", r.status, r.body)
	}
	return env.Result.Bookmark
}

func TestBookmarkErrors(t *testing.T) {
	clk := newClock()
	e := newEmu(t, d1emu.Options{Now: clk.Now})
	db := e.mustCreate("app", smallSeed)
	clk.Advance(time.Hour)
	tests := []struct {
		name, query string
		status      int
		code        int
		msg         string
	}{
		{"future", "?timestamp=" + url.QueryEscape(clk.Now().Add(time.Minute).Format(time.RFC3339)), 400, 7400, "in the future"},
		{"before creation", "?timestamp=" + url.QueryEscape(clk.Now().Add(-2*time.Hour).Format(time.RFC3339)), 400, 7400, "before the earliest restore point"},
		{"not RFC 3339", "?timestamp=yesterday", 400, 7400, "Invalid timestamp"},
	}
	for _, tt := range tests {
		r := e.do("GET", e.dbURL(db.UUID)+"/time_travel/bookmark"+tt.query, e.Token(), nil)
		env := e.envelope(r)
		if r.status != tt.status || env.Success || env.Errors[0].Code != tt.code || !strings.Contains(env.Errors[0].Message, tt.msg) {
			t.Errorf("%s: HTTP %d %s", tt.name, r.status, r.body)
		}
	}
	if r := e.do("GET", e.dbURL("00000000-0000-4000-8000-000000000000")+"/time_travel/bookmark", e.Token(), nil); r.status != 404 {
		t.Errorf("unknown database: HTTP %d", r.status)
	}
	// Past the retention, the oldest step still answers until 30 days back.
	clk.Advance(40 * 24 * time.Hour)
	e.mustQuery(db.UUID, "INSERT INTO users (name) VALUES ('later')")
	if r := e.bookmarkAt(db.UUID, clk.Now().Add(-31*24*time.Hour)); r.status != 400 {
		t.Errorf("31 days back: HTTP %d %s, want 400", r.status, r.body)
	}
	if r := e.bookmarkAt(db.UUID, clk.Now().Add(-29*24*time.Hour)); r.status != 200 {
		t.Errorf("29 days back: HTTP %d %s, want 200", r.status, r.body)
	}
}

// TestBookmarkKinds: virtual tables and synthetic databases have bookmarks too.
func TestBookmarkKinds(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	fts := e.mustCreate("fts", d1emu.FTS5SQL())
	syn, _ := e.AddSyntheticDatabase("syn", 1<<20)
	for _, id := range []string{fts.UUID, syn.UUID} {
		if a, b := e.bookmark(id), e.bookmark(id); a != b {
			t.Errorf("%s: bookmark %s then %s", id, a, b)
		}
	}
	before := e.bookmark(fts.UUID)
	e.mustQuery(fts.UUID, "INSERT INTO articles_fts (title, body) VALUES ('new', 'text')")
	if after := e.bookmark(fts.UUID); after <= before {
		t.Errorf("FTS5 write: bookmark %s, not after %s", after, before)
	}
	before = e.bookmark(fts.UUID)
	path, _ := e.DBPath(fts.UUID)
	if _, err := openDB(t, path).Exec("INSERT INTO articles_fts (title, body) VALUES ('direct', 'write')"); err != nil {
		t.Fatal(err)
	}
	if after := e.bookmark(fts.UUID); after <= before {
		t.Errorf("FTS5 write behind the back: bookmark %s, not after %s", after, before)
	}
}

func TestBookmarkSDK(t *testing.T) {
	clk := newClock()
	e := newEmu(t, d1emu.Options{Now: clk.Now})
	db := e.mustCreate("app", smallSeed)
	first := e.bookmark(db.UUID)
	clk.Advance(time.Hour)
	e.mustQuery(db.UUID, "DELETE FROM users")
	svc := cfd1.NewDatabaseTimeTravelService(e.sdkOptions()...)
	var p cfd1.DatabaseTimeTravelGetBookmarkParams
	p.AccountID.Value, p.AccountID.Present = e.AccountID(), true
	now, err := svc.GetBookmark(context.Background(), db.UUID, p)
	if err != nil || now.Bookmark != e.bookmark(db.UUID) || now.Bookmark == first {
		t.Errorf("GetBookmark now = %+v, %v", now, err)
	}
	p.Timestamp.Value, p.Timestamp.Present = clk.Now().Add(-30*time.Minute), true
	then, err := svc.GetBookmark(context.Background(), db.UUID, p)
	if err != nil || then.Bookmark != first {
		t.Errorf("GetBookmark 30 minutes ago = %+v, %v; want %s", then, err, first)
	}
}

// TestBookmarkDirectWriteThenQuery: a write behind the emulator's back
// still shows after queries that changed nothing.
func TestBookmarkDirectWriteThenQuery(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	before := e.bookmark(db.UUID)
	path, _ := e.DBPath(db.UUID)
	if _, err := openDB(t, path).Exec("INSERT INTO users (name) VALUES ('direct')"); err != nil {
		t.Fatal(err)
	}
	e.mustQuery(db.UUID, "SELECT * FROM users")
	e.mustQuery(db.UUID, "UPDATE users SET name = 'x' WHERE 0")
	if after := e.bookmark(db.UUID); after <= before {
		t.Errorf("bookmark %s after a direct write, not after %s", after, before)
	}
}
