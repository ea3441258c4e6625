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

// runImport imports sql into a database and returns the outcome.
func (e *emu) runImport(id string, sql []byte) importResult {
	e.t.Helper()
	etag := md5hex(sql)
	_, init := e.importCall(id, map[string]any{"action": "init", "etag": etag})
	if r := e.put(init.UploadURL, sql); r.status != http.StatusOK {
		e.t.Fatalf("upload: HTTP %d %s", r.status, r.body)
	}
	_, res := e.importCall(id, map[string]any{"action": "ingest", "etag": etag, "filename": init.Filename})
	for i := 0; res.Status == "active"; i++ {
		if i > 10 {
			e.t.Fatal("import never ends")
		}
		_, res = e.importCall(id, map[string]any{"action": "poll", "current_bookmark": res.AtBookmark})
	}
	return res
}

// TestImportLimits: D1 refuses statements over 100,000 bytes and
// transaction control, and the emulator records the largest statement of
// every import.
func TestImportLimits(t *testing.T) {
	insert := func(n int) string { // an INSERT of exactly n bytes, ';' included
		return "INSERT INTO t VALUES('" + strings.Repeat("x", n-len("INSERT INTO t VALUES('');")) + "');"
	}
	const create = "CREATE TABLE t (a);"
	tests := []struct {
		name       string
		sql        string
		wantErr    string // "" for success
		statements int64
		largest    int
	}{
		{"at the limit", create + "\n-- " + strings.Repeat("c", 500) + "\n" + insert(d1emu.MaxStatementBytes) + "\n", "", 2, d1emu.MaxStatementBytes},
		{"one byte over", create + "\n" + insert(d1emu.MaxStatementBytes+1) + "\n", d1emu.MessageTooBig + " (statement 2 is 100001 bytes", 1, d1emu.MaxStatementBytes + 1},
		{"far over", create + "\n" + insert(300_000) + "\n", d1emu.MessageTooBig + " (statement 2 is over 100000 bytes)", 1, 0},
		{"no final semicolon", create + "\nINSERT INTO t VALUES ('last')", "", 2, len("INSERT INTO t VALUES ('last')")},
		{"semicolons in strings and triggers", create + "\nINSERT INTO t VALUES ('a;b');\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;\n", "", 3, len("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;")},
		{"begin transaction", "BEGIN TRANSACTION;\n" + create + "\nCOMMIT;\n", d1emu.MessageTransaction, 0, len("BEGIN TRANSACTION;")},
		{"commit", create + "\nCOMMIT;\n", d1emu.MessageTransaction, 1, len(create)},
		{"end", create + "\n/* done */ END TRANSACTION;\n", d1emu.MessageTransaction, 1, len(create)}, // the comment before END does not count
		{"savepoint", create + "\nsavepoint a;\n", d1emu.MessageTransaction, 1, len(create)},
		{"failing statement", create + "\nINSERT INTO nope VALUES (1);\n", "no such table: nope: SQLITE_ERROR (in statement 2: INSERT INTO nope", 1, len("INSERT INTO nope VALUES (1);")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmu(t, d1emu.Options{})
			db := e.mustCreate("target", "")
			res := e.runImport(db.UUID, []byte(tt.sql))
			if tt.wantErr == "" && (res.Status != "complete" || res.Result == nil || res.Result.NumQueries != tt.statements) {
				t.Errorf("import: %+v, want complete with %d queries", res, tt.statements)
			}
			if tt.wantErr != "" && (res.Status != "error" || !strings.Contains(res.Error, tt.wantErr)) {
				t.Errorf("import: status %q error %q, want error %q", res.Status, res.Error, tt.wantErr)
			}
			runs := e.Imports()
			if len(runs) != 1 {
				t.Fatalf("Imports() = %+v, want one", runs)
			}
			r := runs[0]
			if r.Database != db.UUID || r.Bytes != int64(len(tt.sql)) || r.Statements != tt.statements || (r.Error != "") != (tt.wantErr != "") {
				t.Errorf("Imports()[0] = %+v", r)
			}
			if tt.largest > 0 && r.LargestStatement != tt.largest || tt.largest == 0 && r.LargestStatement <= d1emu.MaxStatementBytes {
				t.Errorf("largest statement %d bytes, want %d (0: over the limit)", r.LargestStatement, tt.largest)
			}
			if tt.wantErr != "" {
				if got := e.mustQuery(db.UUID, "SELECT count(*) FROM sqlite_schema"); got[0] != "[[0]]" {
					t.Errorf("a failed import left %v objects", got)
				}
			}
		})
	}
}
