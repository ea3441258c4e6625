package d1emu_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/d1emu"
)

type importResult struct {
	Success    bool     `json:"success"`
	AtBookmark string   `json:"at_bookmark"`
	Status     string   `json:"status"`
	Error      string   `json:"error"`
	UploadURL  string   `json:"upload_url"`
	Filename   string   `json:"filename"`
	Messages   []string `json:"messages"`
	Result     *struct {
		FinalBookmark string `json:"final_bookmark"`
		NumQueries    int64  `json:"num_queries"`
		Meta          struct {
			RowsWritten int64 `json:"rows_written"`
		} `json:"meta"`
	} `json:"result"`
}

func (e *emu) importCall(id string, body map[string]any) (int, importResult) {
	e.t.Helper()
	r := e.do("POST", e.dbURL(id)+"/import", e.Token(), body)
	env := e.envelope(r)
	var res importResult
	if env.Success {
		if err := json.Unmarshal(env.Result, &res); err != nil {
			e.t.Fatal(err)
		}
	}
	return r.status, res
}

func (e *emu) put(url string, body []byte) response {
	e.t.Helper()
	return e.do("PUT", url, "", body)
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func TestImportLifecycle(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEmu(t, d1emu.Options{Now: clk.Now})
	e.SetImportPolls(1)
	db := e.mustCreate("target", "")
	sql := []byte("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (a);\nINSERT INTO t VALUES('a;b');\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;\n")
	etag := md5hex(sql)

	_, init := e.importCall(db.UUID, map[string]any{"action": "init", "etag": etag})
	if !init.Success || init.UploadURL == "" || init.Filename == "" {
		t.Fatalf("init: %+v", init)
	}
	if r := e.put(init.UploadURL, sql); r.status != http.StatusOK || strings.Trim(r.header.Get("ETag"), `"`) != etag {
		t.Fatalf("upload: HTTP %d ETag %q, want 200 and %s", r.status, r.header.Get("ETag"), etag)
	}
	if r := e.put(strings.Replace(init.UploadURL, "X-Amz-Signature=", "X-Amz-Signature=00", 1), sql); r.status != http.StatusForbidden {
		t.Errorf("upload with a bad signature: HTTP %d, want 403", r.status)
	}
	_, bad := e.importCall(db.UUID, map[string]any{"action": "ingest", "etag": md5hex([]byte("other")), "filename": init.Filename})
	if bad.Success || !strings.Contains(bad.Error, "mismatch") {
		t.Errorf("ingest with another etag: %+v, want an etag mismatch", bad)
	}
	status, ing := e.importCall(db.UUID, map[string]any{"action": "ingest", "etag": etag, "filename": init.Filename})
	if status != http.StatusAccepted || ing.Status != "active" || ing.AtBookmark == "" {
		t.Fatalf("ingest: HTTP %d %+v", status, ing)
	}
	// The import holds the database: exports are busy until its outcome is polled.
	_, exp := e.export(db.UUID, "")
	if exp.Success || !strings.Contains(exp.Error, "Currently processing") {
		t.Errorf("export during import: %+v, want busy", exp)
	}
	for i, want := range []string{"active", "complete"} {
		_, p := e.importCall(db.UUID, map[string]any{"action": "poll", "current_bookmark": ing.AtBookmark})
		if p.Status != want {
			t.Fatalf("poll %d: %+v, want %s", i+1, p, want)
		}
		if want == "complete" && (p.Result == nil || p.Result.NumQueries != 4 || p.Result.Meta.RowsWritten != 1 || p.Result.FinalBookmark <= ing.AtBookmark) {
			t.Errorf("complete: %+v", p.Result)
		}
	}
	_, over := e.importCall(db.UUID, map[string]any{"action": "poll", "current_bookmark": ing.AtBookmark})
	if over.Success || over.Error != d1emu.MessageNotImporting {
		t.Errorf("poll after the end: %+v, want %q", over, d1emu.MessageNotImporting)
	}
	if got := e.dump(db.UUID); !strings.Contains(got, "CREATE TRIGGER tr") || !strings.Contains(got, "'a;b'") {
		t.Errorf("imported database dumps as:\n%s", got)
	}

	// Upload URLs expire.
	_, init2 := e.importCall(db.UUID, map[string]any{"action": "init", "etag": md5hex([]byte("x"))})
	clk.Advance(2 * time.Hour)
	if r := e.put(init2.UploadURL, []byte("x")); r.status != http.StatusForbidden || !bytes.Contains(r.body, []byte("expired")) {
		t.Errorf("expired upload URL: HTTP %d %s", r.status, r.body)
	}
}

func TestCreateEndpoint(t *testing.T) {
	t.Parallel()
	e := newEmu(t, d1emu.Options{})
	url := e.srv.URL + "/client/v4/accounts/" + e.AccountID() + "/d1/database"
	env := e.envelope(e.do("POST", url, e.Token(), map[string]any{"name": "fresh"}))
	var got struct {
		UUID      string `json:"uuid"`
		Name      string `json:"name"`
		NumTables int    `json:"num_tables"`
	}
	json.Unmarshal(env.Result, &got) //nolint:errcheck
	if !env.Success || got.Name != "fresh" || len(got.UUID) != 36 {
		t.Fatalf("create: %+v", env)
	}
	if r := e.do("POST", url, e.Token(), map[string]any{"name": "fresh"}); r.status != http.StatusBadRequest {
		t.Errorf("duplicate name: HTTP %d, want 400", r.status)
	}
	if r := e.do("POST", url, "wrong", map[string]any{"name": "other"}); r.status != http.StatusUnauthorized {
		t.Errorf("bad token: HTTP %d, want 401", r.status)
	}
}
