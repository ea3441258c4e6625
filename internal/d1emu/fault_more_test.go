package d1emu_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// TestFaultWriteBetweenPages: a reader paging through a table sees a write
// land between two of its requests, and the bookmark tells it so.
func TestFaultWriteBetweenPages(t *testing.T) {
	tests := []struct {
		name        string
		fault       d1emu.Fault
		wantWrites  int
		wantInPages bool // the written row shows up in a later page
	}{
		{"after the second page", d1emu.Fault{Endpoint: d1emu.EndpointRaw, Kind: d1emu.FaultWrite, After: 2, SQL: "INSERT INTO users (name) VALUES ('intruder')"}, 1, true},
		{"twice, from the first", d1emu.Fault{Endpoint: d1emu.EndpointAny, Kind: d1emu.FaultWrite, Times: 2, SQL: "INSERT INTO users (name) VALUES ('intruder')"}, 2, true},
		{"an update of a page already read", d1emu.Fault{Endpoint: d1emu.EndpointRaw, Kind: d1emu.FaultWrite, After: 3, SQL: "UPDATE users SET name = 'changed' WHERE id = 1"}, 0, false},
		{"on another database", d1emu.Fault{Endpoint: d1emu.EndpointRaw, Kind: d1emu.FaultWrite, SQL: "INSERT INTO users (name) VALUES ('intruder')", Database: "other"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmu(t, d1emu.Options{})
			db := e.mustCreate("app", `CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
				WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) INSERT INTO users (name) SELECT 'user ' || i FROM n;`)
			other := e.mustCreate("other", smallSeed)
			if tt.fault.Database == "other" {
				tt.fault.Database = other.UUID
			}
			e.InjectFault(tt.fault)
			before := e.bookmark(db.UUID)
			var pages []string
			for last := 0; ; {
				got := e.mustQuery(db.UUID, "SELECT id, name FROM users WHERE id > ? ORDER BY id LIMIT 3", last)
				if got[0] == "[]" {
					break
				}
				pages = append(pages, got[0])
				fmt.Sscanf(got[0][strings.LastIndex(got[0], "[")+1:], "%d", &last)
			}
			after := e.bookmark(db.UUID)
			all := strings.Join(pages, "")
			if n := strings.Count(all, "intruder"); n != tt.wantWrites || tt.wantInPages != (n > 0) {
				t.Errorf("pages %s: %d intruders, want %d", all, n, tt.wantWrites)
			}
			changed := tt.fault.Database == ""
			if (after != before) != changed {
				t.Errorf("bookmark %s → %s; want a change: %v", before, after, changed)
			}
			if !changed && tt.fault.Database != "" {
				if got := e.mustQuery(other.UUID, "SELECT count(*) FROM users"); got[0] != "[[3]]" {
					t.Errorf("the other database has %v users: a fault for it fired on requests to another", got)
				}
			}
			if tt.name == "an update of a page already read" && strings.Contains(all, "changed") {
				t.Errorf("the update landed before the first page was read: %s", all)
			}
		})
	}
}

func TestFaultWriteOnBookmark(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	e.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointBookmark, Kind: d1emu.FaultWrite, After: 1, SQL: "DELETE FROM users"})
	first, second := e.bookmark(db.UUID), e.bookmark(db.UUID)
	if second <= first {
		t.Errorf("bookmarks %s then %s: want the write before the second", first, second)
	}
	if third := e.bookmark(db.UUID); third != second {
		t.Errorf("bookmark %s after the fault, want %s", third, second)
	}
}

func TestFaultAfter(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	e.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointGet, Kind: d1emu.FaultServerError, After: 2, Times: 2})
	var got []int
	for range 5 {
		got = append(got, e.do("GET", e.dbURL(db.UUID), e.Token(), nil).status)
	}
	if fmt.Sprint(got) != "[200 200 500 500 200]" {
		t.Errorf("statuses %v, want two through, two hit, then through", got)
	}
}

func TestFaultIgnoreRange(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("sample", d1emu.SampleSQL)
	full := e.dump(db.UUID)
	url := e.runExport(db.UUID).Result.SignedURL
	e.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointDownload, Kind: d1emu.FaultIgnoreRange})
	for i, want := range []int{http.StatusOK, http.StatusPartialContent} {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Range", "bytes=100-")
		res, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		wantBody := full
		if want == http.StatusPartialContent {
			wantBody = full[100:]
		}
		if res.StatusCode != want || string(body) != wantBody || res.Header.Get("Content-Range") != "" && want == http.StatusOK {
			t.Errorf("request %d: HTTP %d, %d bytes, Content-Range %q; want HTTP %d and %d bytes", i, res.StatusCode, len(body), res.Header.Get("Content-Range"), want, len(wantBody))
		}
	}
}

// TestFaultDropAfterResume: a download cut after N bytes resumes with a
// Range request and ends with the exact dump.
func TestFaultDropAfterResume(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	sample := e.mustCreate("sample", d1emu.SampleSQL)
	syn, _ := e.AddSyntheticDatabase("syn", 3<<20+11)
	for _, id := range []string{sample.UUID, syn.UUID} {
		full := []byte(e.dump(id))
		url := e.runExport(id).Result.SignedURL
		cut := int64(len(full) / 3)
		e.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointDownload, Kind: d1emu.FaultDropAfter, Bytes: cut, Times: 2})
		var got []byte
		var statuses []int
		for len(got) < len(full) && len(statuses) < 5 {
			req, _ := http.NewRequest("GET", url, nil)
			if len(got) > 0 {
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(got)))
			}
			res, err := e.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			statuses = append(statuses, res.StatusCode)
			part, err := io.ReadAll(res.Body)
			res.Body.Close()
			if (err != nil) != (len(statuses) <= 2) || int64(len(part)) != min(cut, int64(len(full)-len(got))) && len(statuses) <= 2 {
				t.Errorf("request %d: %d bytes, err %v", len(statuses), len(part), err)
			}
			got = append(got, part...)
		}
		if !bytes.Equal(got, full) || fmt.Sprint(statuses) != "[200 206 206]" {
			t.Errorf("%s: resumed download of %d bytes (statuses %v), want the %d-byte dump", id, len(got), statuses, len(full))
		}
	}
}

func TestFaultValidation(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	bad := []d1emu.Fault{
		{Endpoint: d1emu.EndpointQuery, Kind: d1emu.FaultWrite},                                   // no SQL
		{Endpoint: d1emu.EndpointGet, Kind: d1emu.FaultServerError, SQL: "DELETE FROM t"},         // SQL on another kind
		{Endpoint: d1emu.EndpointList, Kind: d1emu.FaultWrite, SQL: "DELETE FROM t"},              // write where it cannot apply
		{Endpoint: d1emu.EndpointList, Kind: d1emu.FaultDropAfter, Bytes: 10},                     // download only
		{Endpoint: d1emu.EndpointDownload, Kind: d1emu.FaultDropAfter, Bytes: -1},                 // negative
		{Endpoint: d1emu.EndpointGet, Kind: d1emu.FaultRateLimit, After: -1},                      // negative
		{Endpoint: d1emu.EndpointDownload, Kind: d1emu.FaultIgnoreRange, Database: "", Times: -2}, // negative
		{Endpoint: d1emu.EndpointBookmark, Kind: d1emu.FaultBusy},                                 // export only
	}
	for _, f := range bad {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("InjectFault(%+v) did not panic", f)
				}
			}()
			e.InjectFault(f)
		}()
	}
	// Every kind applies to the endpoints its table row names, and the
	// table names every kind.
	for _, k := range d1emu.FaultKinds() {
		for _, ep := range k.Endpoints {
			f := d1emu.Fault{Endpoint: ep, Kind: k.Kind}
			if k.Kind == d1emu.FaultWrite {
				f.SQL = "SELECT 1"
			}
			e.InjectFault(f)
		}
	}
	e.ClearFaults()
}
