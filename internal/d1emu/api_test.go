package d1emu_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"

	"github.com/d1backup/d1backup/internal/d1emu"
)

const smallSeed = `CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada'), ('bob');`

var bookmarkRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$`)

func TestExportLifecycle(t *testing.T) {
	tests := []struct {
		polls int
		want  []string // status of the start, then of each poll
	}{
		{0, []string{"complete"}},
		{1, []string{"active", "complete"}},
		{3, []string{"active", "active", "active", "complete"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("polls=", tt.polls), func(t *testing.T) {
			e := newEmu(t, d1emu.Options{ExportPolls: tt.polls})
			db := e.mustCreate("app", smallSeed)
			var got []string
			code, res := e.export(db.UUID, "")
			bm := res.AtBookmark
			if !bookmarkRE.MatchString(bm) {
				t.Errorf("bookmark %q has the wrong shape", bm)
			}
			for {
				got = append(got, res.Status)
				wantCode := http.StatusOK
				if res.Status == "active" {
					wantCode = http.StatusAccepted
				}
				if code != wantCode || res.Type != "export" || res.AtBookmark != bm || len(got) > 10 {
					t.Fatalf("HTTP %d type %q bookmark %q; want HTTP %d, export, %s", code, res.Type, res.AtBookmark, wantCode, bm)
				}
				if res.Status != "active" {
					break
				}
				if res.Result != nil {
					t.Errorf("an active export has a result: %+v", res.Result)
				}
				code, res = e.export(db.UUID, bm)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("statuses = %v, want %v", got, tt.want)
			}
			if res.Result == nil || res.Result.SignedURL == "" || !strings.HasSuffix(res.Result.Filename, ".sql") {
				t.Fatalf("complete export lacks result.result: %+v", res)
			}
			if !strings.HasPrefix(res.Result.SignedURL, e.srv.URL+"/__emu/dumps/") || !strings.Contains(res.Result.SignedURL, "X-Amz-Expires=3600") || !strings.Contains(res.Result.SignedURL, "X-Amz-Signature=") {
				t.Errorf("signed URL %q", res.Result.SignedURL)
			}
			dl := e.download(res.Result.SignedURL)
			if dl.status != http.StatusOK || string(dl.body) != e.dump(db.UUID) {
				t.Errorf("download: HTTP %d, %d bytes; want the dump", dl.status, len(dl.body))
			}
			if got, want := dl.header.Get("Content-Length"), fmt.Sprint(len(dl.body)); got != want {
				t.Errorf("Content-Length = %s, want %s", got, want)
			}
			// A completed export still answers polls with its URL.
			if _, again := e.export(db.UUID, bm); again.Status != "complete" || again.Result == nil {
				t.Errorf("poll after completion = %+v", again)
			}
		})
	}
}

func TestExportBodyOnWire(t *testing.T) {
	e := newEmu(t, d1emu.Options{ExportPolls: 1})
	db := e.mustCreate("app", smallSeed)
	r := e.do("POST", e.dbURL(db.UUID)+"/export", e.Token(), map[string]any{"output_format": "polling"})
	var raw map[string]any
	json.Unmarshal(r.body, &raw)
	result := raw["result"].(map[string]any)
	for _, k := range []string{"success", "type", "at_bookmark", "status", "messages"} {
		if _, ok := result[k]; !ok {
			t.Errorf("active result lacks %q: %s", k, r.body)
		}
	}
	r = e.do("POST", e.dbURL(db.UUID)+"/export", e.Token(), map[string]any{"output_format": "polling", "current_bookmark": result["at_bookmark"]})
	json.Unmarshal(r.body, &raw)
	inner := raw["result"].(map[string]any)["result"].(map[string]any)
	if inner["signed_url"] == nil || inner["filename"] == nil {
		t.Errorf("signed_url/filename not under result.result: %s", r.body)
	}
	if _, ok := raw["result"].(map[string]any)["signed_url"]; ok {
		t.Errorf("signed_url also at the wrong level: %s", r.body)
	}
}

func TestBookmarks(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	first := e.runExport(db.UUID).AtBookmark
	if again := e.runExport(db.UUID).AtBookmark; again != first {
		t.Errorf("unchanged database: bookmark %s, then %s", first, again)
	}
	if err := e.Exec(db.UUID, "INSERT INTO users (name) VALUES ('cy')"); err != nil {
		t.Fatal(err)
	}
	second := e.runExport(db.UUID).AtBookmark
	if second <= first {
		t.Errorf("after a write: bookmark %s, not after %s", second, first)
	}
	// A change behind the emulator's back advances it too.
	path, _ := e.DBPath(db.UUID)
	if _, err := openDB(t, path).Exec("DELETE FROM users WHERE name = 'cy'"); err != nil {
		t.Fatal(err)
	}
	if third := e.runExport(db.UUID).AtBookmark; third <= second {
		t.Errorf("after a direct write: bookmark %s, not after %s", third, second)
	}
	other := e.mustCreate("other", smallSeed)
	if bm := e.runExport(other.UUID).AtBookmark; bm == first {
		t.Errorf("two databases share bookmark %s", bm)
	}
}

func TestExportConditions(t *testing.T) {
	clk := newClock()
	e := newEmu(t, d1emu.Options{ExportPolls: 2, IdleTimeout: 10 * time.Second, URLTTL: time.Hour, Now: clk.Now})
	db := e.mustCreate("app", smallSeed)

	t.Run("busy while active", func(t *testing.T) {
		_, res := e.export(db.UUID, "")
		if res.Status != "active" {
			t.Fatalf("start: %+v", res)
		}
		if _, busy := e.export2(db.UUID, ""); busy.Success || !strings.Contains(busy.Error, "Currently processing a long-running export") {
			t.Errorf("second start = %+v, want busy", busy)
		}
		clk.Advance(11 * time.Second) // let it lapse for the next test
	})
	t.Run("idle export cancels itself", func(t *testing.T) {
		_, res := e.export(db.UUID, "")
		if res.Status != "active" {
			t.Fatalf("start after idle: %+v", res)
		}
		clk.Advance(5 * time.Second)
		if _, p := e.export(db.UUID, res.AtBookmark); p.Status != "active" {
			t.Fatalf("poll within the idle window: %+v", p)
		}
		clk.Advance(11 * time.Second)
		if _, p := e.export2(db.UUID, res.AtBookmark); p.Success || p.Error != d1emu.MessageNotExporting {
			t.Errorf("poll after idle = %+v, want not exporting", p)
		}
	})
	t.Run("never started", func(t *testing.T) {
		if _, p := e.export2(db.UUID, "00000001-00000000-00000000-00000000000000000000000000000000"); p.Success || p.Error != d1emu.MessageNotExporting {
			t.Errorf("poll = %+v, want not exporting", p)
		}
	})
	t.Run("signed URL expires", func(t *testing.T) {
		res := e.runExport(db.UUID)
		clk.Advance(59 * time.Minute)
		if dl := e.download(res.Result.SignedURL); dl.status != http.StatusOK {
			t.Errorf("download within the hour: HTTP %d %s", dl.status, dl.body)
		}
		clk.Advance(2 * time.Minute)
		dl := e.download(res.Result.SignedURL)
		if dl.status != http.StatusForbidden || !strings.Contains(string(dl.body), "<Code>AccessDenied</Code><Message>Request has expired</Message>") {
			t.Errorf("download after the hour: HTTP %d %s", dl.status, dl.body)
		}
		if _, p := e.export2(db.UUID, res.AtBookmark); p.Success || p.Error != d1emu.MessageNotExporting {
			t.Errorf("poll after URL expiry = %+v, want not exporting", p)
		}
	})
	t.Run("bad signature", func(t *testing.T) {
		res := e.runExport(db.UUID)
		dl := e.download(strings.Replace(res.Result.SignedURL, "X-Amz-Signature=", "X-Amz-Signature=0", 1))
		if dl.status != http.StatusForbidden || !strings.Contains(string(dl.body), "<Error><Code>") {
			t.Errorf("download with a bad signature: HTTP %d %s", dl.status, dl.body)
		}
	})
}

// export2 is export for answers with result.success false.
func (e *emu) export2(id, bookmark string) (int, exportResult) {
	e.t.Helper()
	body := map[string]any{"output_format": "polling"}
	if bookmark != "" {
		body["current_bookmark"] = bookmark
	}
	r := e.do("POST", e.dbURL(id)+"/export", e.Token(), body)
	env := e.envelope(r)
	var res exportResult
	json.Unmarshal(env.Result, &res)
	if r.status != http.StatusOK || !env.Success {
		e.t.Errorf("HTTP %d envelope success %v; want 200 true", r.status, env.Success)
	}
	return r.status, res
}

func TestVirtualTableExport(t *testing.T) {
	for _, polls := range []int{0, 2} {
		e := newEmu(t, d1emu.Options{ExportPolls: polls})
		db := e.mustCreate("fts", "CREATE TABLE docs (body TEXT); CREATE VIRTUAL TABLE docs_fts USING fts5(body);")
		res := e.runExport(db.UUID)
		if res.Status != "error" || res.Error != "cannot export databases with Virtual Tables (fts5)" || res.Result != nil {
			t.Errorf("polls=%d: export = %+v, want status error", polls, res)
		}
	}
}

func TestDumpOptions(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed+`CREATE TABLE pets (name TEXT); INSERT INTO pets VALUES ('rex'); CREATE INDEX users_name ON users(name);`)
	full := e.dump(db.UUID)
	tests := []struct {
		name       string
		opts       map[string]any
		has, lacks []string
	}{
		{"none", nil, []string{"CREATE TABLE users", "INSERT INTO \"pets\"", "CREATE INDEX"}, nil},
		{"no_data", map[string]any{"no_data": true}, []string{"CREATE TABLE users", "CREATE INDEX"}, []string{"INSERT"}},
		{"no_schema", map[string]any{"no_schema": true}, []string{"INSERT INTO \"users\""}, []string{"CREATE"}},
		{"tables", map[string]any{"tables": []string{"pets"}}, []string{"CREATE TABLE pets", "INSERT INTO \"pets\""}, []string{"users"}},
	}
	var bookmarks []string
	for _, tt := range tests {
		body := map[string]any{"output_format": "polling"}
		if tt.opts != nil {
			body["dump_options"] = tt.opts
		}
		r := e.do("POST", e.dbURL(db.UUID)+"/export", e.Token(), body)
		var res exportResult
		json.Unmarshal(e.envelope(r).Result, &res)
		if res.Result == nil {
			t.Fatalf("%s: %s", tt.name, r.body)
		}
		got := string(e.download(res.Result.SignedURL).body)
		if tt.opts == nil && got != full {
			t.Errorf("%s: dump differs from WriteDump", tt.name)
		}
		if !strings.HasPrefix(got, "PRAGMA defer_foreign_keys=TRUE;\n") {
			t.Errorf("%s: no PRAGMA line", tt.name)
		}
		for _, s := range tt.has {
			if !strings.Contains(got, s) {
				t.Errorf("%s: dump lacks %q:\n%s", tt.name, s, got)
			}
		}
		for _, s := range tt.lacks {
			if strings.Contains(got, s) {
				t.Errorf("%s: dump has %q:\n%s", tt.name, s, got)
			}
		}
		bookmarks = append(bookmarks, res.AtBookmark)
	}
	for _, bm := range bookmarks {
		if bm != bookmarks[0] {
			t.Errorf("dump options changed the bookmark: %v", bookmarks)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	polling := map[string]any{"output_format": "polling"}
	tests := []struct {
		name     string
		method   string
		url      string
		token    string
		body     any
		wantCode int
		wantErr  int
		wantMsg  string
	}{
		{"no token", "GET", e.dbURL(db.UUID), "", nil, 401, 10000, "Authentication error"},
		{"wrong token", "POST", e.dbURL(db.UUID) + "/export", "nope", polling, 401, 10000, "Authentication error"},
		{"wrong account", "GET", strings.Replace(e.dbURL(db.UUID), e.AccountID(), strings.Repeat("a", 32), 1), e.Token(), nil, 403, 7403, "not authorized"},
		{"unknown database get", "GET", e.dbURL("00000000-0000-4000-8000-000000000000"), e.Token(), nil, 404, 7404, "The database 00000000-0000-4000-8000-000000000000 could not be found."},
		{"unknown database export", "POST", e.dbURL("nope") + "/export", e.Token(), polling, 404, 7404, "could not be found"},
		{"missing output_format", "POST", e.dbURL(db.UUID) + "/export", e.Token(), map[string]any{}, 400, 7400, "output_format"},
		{"missing output_format on poll", "POST", e.dbURL(db.UUID) + "/export", e.Token(), map[string]any{"current_bookmark": "x"}, 400, 7400, "output_format"},
		{"bad json", "POST", e.dbURL(db.UUID) + "/export", e.Token(), []byte("{"), 400, 7400, "JSON"},
		{"no route", "GET", e.srv.URL + "/client/v4/zones", e.Token(), nil, 404, 7000, "No route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.url, tt.token, tt.body)
			env := e.envelope(r)
			if r.status != tt.wantCode || env.Success || len(env.Errors) != 1 || env.Errors[0].Code != tt.wantErr || !strings.Contains(env.Errors[0].Message, tt.wantMsg) {
				t.Errorf("got HTTP %d %s; want HTTP %d code %d %q", r.status, r.body, tt.wantCode, tt.wantErr, tt.wantMsg)
			}
		})
	}
	// Control endpoints are not reachable under the API prefix.
	if r := e.do("GET", e.srv.URL+"/client/v4/__emu/requests", e.Token(), nil); r.status != 404 {
		t.Errorf("control endpoint under /client/v4: HTTP %d", r.status)
	}
}

func TestListAndGet(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	var names []string
	for i := range 25 {
		name := fmt.Sprintf("db-%02d", i)
		e.mustCreate(name, "")
		names = append(names, name)
	}
	syn, _ := e.AddSyntheticDatabase("synthetic", 12345)
	names = append(names, "synthetic")
	base := e.srv.URL + "/client/v4/accounts/" + e.AccountID() + "/d1/database"
	tests := []struct {
		query                       string
		wantNames                   []string
		page, perPage, count, total int
	}{
		{"", names, 1, 1000, 26, 26},
		{"?per_page=10", names[:10], 1, 10, 10, 26},
		{"?per_page=10&page=3", names[20:], 3, 10, 6, 26},
		{"?per_page=10&page=4", nil, 4, 10, 0, 26},
		{"?per_page=1", names[:10], 1, 10, 10, 26},
		{"?per_page=100000", names, 1, 10000, 26, 26},
		{"?name=db-1", names[10:20], 1, 1000, 10, 10},
		{"?name=synthetic", names[25:], 1, 1000, 1, 1},
	}
	for _, tt := range tests {
		r := e.do("GET", base+tt.query, e.Token(), nil)
		env := e.envelope(r)
		var items []struct {
			UUID, Name, CreatedAt, Version string
			Jurisdiction                   *string
		}
		json.Unmarshal(env.Result, &items)
		var got []string
		for _, it := range items {
			got = append(got, it.Name)
		}
		if r.status != 200 || strings.Join(got, ",") != strings.Join(tt.wantNames, ",") {
			t.Errorf("list%s: HTTP %d names %v, want %v", tt.query, r.status, got, tt.wantNames)
		}
		if ri := env.ResultInfo; ri == nil || ri.Page != tt.page || ri.PerPage != tt.perPage || ri.Count != tt.count || ri.TotalCount != tt.total {
			t.Errorf("list%s: result_info %+v, want page %d per_page %d count %d total %d", tt.query, ri, tt.page, tt.perPage, tt.count, tt.total)
		}
	}

	r := e.do("GET", base+"/"+syn.UUID, e.Token(), nil)
	var got map[string]any
	json.Unmarshal(e.envelope(r).Result, &got)
	want := map[string]any{"uuid": syn.UUID, "name": "synthetic", "version": "production", "num_tables": 1.0, "file_size": 12345.0,
		"jurisdiction": nil, "read_replication": map[string]any{"mode": "disabled"}}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("get %s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(got["created_at"])); err != nil {
		t.Errorf("created_at %v: %v", got["created_at"], err)
	}
}

// TestSDK drives the emulator with the official Go SDK, as d1backup does.
func TestSDK(t *testing.T) {
	e := newEmu(t, d1emu.Options{ExportPolls: 2})
	db := e.mustCreate("sample", d1emu.SampleSQL)
	for i := range 12 {
		e.mustCreate(fmt.Sprint("extra-", i), "")
	}
	ctx := context.Background()
	svc := cfd1.NewDatabaseService(e.sdkOptions()...)
	var lp cfd1.DatabaseListParams
	lp.AccountID.Value, lp.AccountID.Present = e.AccountID(), true
	lp.PerPage.Value, lp.PerPage.Present = 10, true
	pager := svc.ListAutoPaging(ctx, lp)
	n := 0
	for pager.Next() {
		n++
	}
	if err := pager.Err(); err != nil || n != 13 {
		t.Errorf("ListAutoPaging: %d databases, err %v; want 13", n, err)
	}

	var gp cfd1.DatabaseGetParams
	gp.AccountID.Value, gp.AccountID.Present = e.AccountID(), true
	got, err := svc.Get(ctx, db.UUID, gp)
	if err != nil || got.UUID != db.UUID || got.Name != "sample" || got.NumTables != 3 || got.FileSize <= 0 || got.CreatedAt.IsZero() {
		t.Errorf("Get = %+v, %v", got, err)
	}

	var ep cfd1.DatabaseExportParams
	ep.AccountID.Value, ep.AccountID.Present = e.AccountID(), true
	ep.OutputFormat.Value, ep.OutputFormat.Present = cfd1.DatabaseExportParamsOutputFormatPolling, true
	res, err := svc.Export(ctx, db.UUID, ep)
	if err != nil || !res.Success || string(res.Status) != "active" {
		t.Fatalf("Export start = %+v, %v", res, err)
	}
	ep.CurrentBookmark.Value, ep.CurrentBookmark.Present = res.AtBookmark, true
	for string(res.Status) == "active" {
		if res, err = svc.Export(ctx, db.UUID, ep); err != nil {
			t.Fatal(err)
		}
	}
	if res.Status != cfd1.DatabaseExportResponseStatusComplete || res.Result.SignedURL == "" || res.Result.Filename == "" {
		t.Fatalf("Export end = %+v", res)
	}
	if dl := e.download(res.Result.SignedURL); string(dl.body) != e.dump(db.UUID) {
		t.Error("downloaded dump differs from WriteDump")
	}

	// Not exporting: no Go error, result.success false.
	ep.CurrentBookmark.Value = "ffffffff-00000000-00000000-00000000000000000000000000000000"
	res, err = svc.Export(ctx, db.UUID, ep)
	if err != nil || res.Success || res.Error != d1emu.MessageNotExporting {
		t.Errorf("poll of an unknown bookmark = %+v, %v", res, err)
	}

	for _, r := range e.Requests() {
		if r.Endpoint == d1emu.EndpointDownload && r.HasAuth {
			t.Errorf("the download carried an Authorization header")
		}
		if r.Endpoint != d1emu.EndpointDownload && !r.HasAuth {
			t.Errorf("API request %s %s without auth", r.Method, r.Path)
		}
	}
}
