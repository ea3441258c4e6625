package d1emu_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// queryEntry is one statement's result; Results kept raw to compare bytes.
type queryEntry struct {
	Results json.RawMessage `json:"results"`
	Success bool            `json:"success"`
	Meta    struct {
		ChangedDB       bool    `json:"changed_db"`
		Changes         int64   `json:"changes"`
		Duration        float64 `json:"duration"`
		LastRowID       float64 `json:"last_row_id"`
		RowsRead        int64   `json:"rows_read"`
		RowsWritten     int64   `json:"rows_written"`
		ServedByRegion  string  `json:"served_by_region"`
		ServedByColo    string  `json:"served_by_colo"`
		ServedByPrimary bool    `json:"served_by_primary"`
		SizeAfter       int64   `json:"size_after"`
	} `json:"meta"`
}

// query posts to /query or /raw and returns the HTTP status and envelope.
func (e *emu) query(id, endpoint string, body any) (int, envelope, []queryEntry) {
	e.t.Helper()
	r := e.do("POST", e.dbURL(id)+"/"+endpoint, e.Token(), body)
	env := e.envelope(r)
	var entries []queryEntry
	if env.Success {
		if err := json.Unmarshal(env.Result, &entries); err != nil {
			e.t.Fatalf("result: %v: %s", err, r.body)
		}
	}
	return r.status, env, entries
}

// mustQuery runs sql on /raw and returns each statement's rows as JSON.
func (e *emu) mustQuery(id, sql string, params ...any) []string {
	e.t.Helper()
	status, env, entries := e.query(id, "raw", map[string]any{"sql": sql, "params": params})
	if status != 200 || !env.Success {
		e.t.Fatalf("query %q: HTTP %d %+v", sql, status, env.Errors)
	}
	var out []string
	for _, en := range entries {
		var res struct {
			Rows json.RawMessage `json:"rows"`
		}
		json.Unmarshal(en.Results, &res)
		out = append(out, string(res.Rows))
	}
	return out
}

func (e *emu) bookmark(id string) string {
	e.t.Helper()
	r := e.do("GET", e.dbURL(id)+"/time_travel/bookmark", e.Token(), nil)
	var res struct{ Bookmark string }
	if err := json.Unmarshal(e.envelope(r).Result, &res); err != nil || r.status != 200 || !bookmarkRE.MatchString(res.Bookmark) {
		e.t.Fatalf("bookmark: HTTP %d %s", r.status, r.body)
	}
	return res.Bookmark
}

func TestQueryValues(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("values", `CREATE TABLE dates (d DATETIME, t TIMESTAMP); INSERT INTO dates VALUES ('2024-01-02 03:04:05', '2024-01-02T03:04:05.123+02:00');`)
	tests := []struct {
		sql  string
		want string // the /raw rows
	}{
		{"SELECT 42, -7, 0", `[[42,-7,0]]`},
		{"SELECT 9007199254740993", `[[9007199254740992]]`},
		{"SELECT 9223372036854775807, -9223372036854775808", `[[9223372036854776000,-9223372036854776000]]`},
		{"SELECT 1.5, 0.1 + 0.2, 1.5e-7, 1e22, -0.0", `[[1.5,0.30000000000000004,1.5e-7,1e+22,0]]`},
		{"SELECT 9e999, -9e999", `[[null,null]]`},
		{"SELECT NULL", `[[null]]`},
		{"SELECT x'00ff7f', x''", `[[[0,255,127],[]]]`},
		{`SELECT 'a"b\c' || char(10, 9, 1) || '★ Zoë'`, `[["a\"b\\c\n\t\u0001★ Zoë"]]`},
		{"SELECT CAST(x'41ff42' AS TEXT)", `[["A\ufffdB"]]`},
		{"SELECT d, t FROM dates", `[["2024-01-02 03:04:05","2024-01-02T03:04:05.123+02:00"]]`},
		{"SELECT 1 AS a WHERE 0", `[]`},
	}
	for _, tt := range tests {
		if got := e.mustQuery(db.UUID, tt.sql); len(got) != 1 || got[0] != tt.want {
			t.Errorf("%s: rows %v, want %s", tt.sql, got, tt.want)
		}
	}

	// /query: one object per row; a repeated column name keeps its first
	// place and its last value, as in a JavaScript object.
	_, _, entries := e.query(db.UUID, "query", map[string]any{"sql": "SELECT 1 AS a, 2 AS b, 3 AS a, x'01' AS c"})
	if got, want := string(entries[0].Results), `[{"a":3,"b":2,"c":[1]}]`; got != want {
		t.Errorf("query results %s, want %s", got, want)
	}
	_, _, entries = e.query(db.UUID, "raw", map[string]any{"sql": "SELECT 1 AS a, 2 AS b, 3 AS a"})
	if got, want := string(entries[0].Results), `{"columns":["a","b","a"],"rows":[[1,2,3]]}`; got != want {
		t.Errorf("raw results %s, want %s", got, want)
	}
}

func TestQueryParams(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("params", "")
	tests := []struct {
		param any
		want  string
	}{
		{"5", `[["text","'5'"]]`},
		{5, `[["integer","5"]]`},
		{json.Number("5.0"), `[["integer","5"]]`}, // JavaScript has one number type
		{5.5, `[["real","5.5"]]`},
		{json.Number("9007199254740993"), `[["integer","9007199254740992"]]`},
		{true, `[["integer","1"]]`},
		{false, `[["integer","0"]]`},
		{nil, `[["null","NULL"]]`},
		{"x'00'; DROP TABLE t", `[["text","'x''00''; DROP TABLE t'"]]`},
	}
	for _, tt := range tests {
		if got := e.mustQuery(db.UUID, "SELECT typeof(?1), quote(?1)", tt.param); len(got) != 1 || got[0] != tt.want {
			t.Errorf("param %#v: %v, want %s", tt.param, got, tt.want)
		}
	}
	// Only the last statement takes parameters; a batch gives each query its own.
	if got := e.mustQuery(db.UUID, "SELECT 1; SELECT ?, ?", "a", 2); strings.Join(got, " ") != `[[1]] [["a",2]]` {
		t.Errorf("multi-statement with parameters: %v", got)
	}
	_, _, entries := e.query(db.UUID, "raw", map[string]any{"batch": []any{
		map[string]any{"sql": "SELECT ?", "params": []any{"one"}},
		map[string]any{"sql": "SELECT ?, ?", "params": []any{2, "three"}},
	}})
	if len(entries) != 2 || !strings.Contains(string(entries[0].Results), `[["one"]]`) || !strings.Contains(string(entries[1].Results), `[[2,"three"]]`) {
		t.Errorf("batch: %+v", entries)
	}
}

func TestQueryErrors(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed+"CREATE UNIQUE INDEX users_name ON users(name);")
	syn, _ := e.AddSyntheticDatabase("syn", 1000)
	long := func(n int) string { // a statement of exactly n bytes
		return "SELECT '" + strings.Repeat("x", n-len("SELECT '';")) + "';"
	}
	params101 := make([]any, 101)
	tests := []struct {
		name   string
		id     string
		body   any
		status int
		code   int
		msg    string
	}{
		{"syntax", db.UUID, map[string]any{"sql": "SELECT 1;\nSELEC 2"}, 400, 7500, `near "SELEC": syntax error at offset 0: SQLITE_ERROR`},
		{"no table", db.UUID, map[string]any{"sql": "SELECT * FROM nope"}, 400, 7500, "no such table: nope: SQLITE_ERROR"},
		{"constraint", db.UUID, map[string]any{"sql": "INSERT INTO users (name) VALUES ('ada')"}, 400, 7500, "UNIQUE constraint failed: users.name: SQLITE_CONSTRAINT"},
		{"too few params", db.UUID, map[string]any{"sql": "SELECT ?, ?", "params": []any{1}}, 400, 7500, d1emu.MessageWrongParamCount},
		{"too many params", db.UUID, map[string]any{"sql": "SELECT ?", "params": []any{1, 2}}, 400, 7500, d1emu.MessageWrongParamCount},
		{"params not last", db.UUID, map[string]any{"sql": "SELECT ?; SELECT 1", "params": []any{1}}, 400, 7500, d1emu.MessageParamsNotLast},
		{"over 100 parameters", db.UUID, map[string]any{"sql": "SELECT ?" + strings.Repeat(",?", 100), "params": params101}, 400, 7500, "too many SQL variables"},
		{"begin", db.UUID, map[string]any{"sql": "BEGIN TRANSACTION; SELECT 1; COMMIT"}, 400, 7500, d1emu.MessageTransaction},
		{"savepoint", db.UUID, map[string]any{"sql": "/* x */ SAVEPOINT a"}, 400, 7500, d1emu.MessageTransaction},
		{"attach", db.UUID, map[string]any{"sql": "ATTACH '/tmp/d1emu-attack.db' AS x"}, 400, 7500, "too many attached databases - max 0: SQLITE_ERROR"},
		{"writable schema", db.UUID, map[string]any{"sql": "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = 'CREATE TABLE users (x)' WHERE name = 'users'"}, 400, 7500, "table sqlite_master may not be modified: SQLITE_ERROR"},
		{"load an extension", db.UUID, map[string]any{"sql": "SELECT load_extension('/tmp/d1emu-attack.so')"}, 400, 7500, "not authorized: SQLITE_ERROR"},
		{"body over 10 MiB", db.UUID, []byte(`{"sql":"SELECT '` + strings.Repeat("x", 10<<20) + `'"}`), 413, 7400, "Request body over"},
		{"vacuum into a file", db.UUID, map[string]any{"sql": "VACUUM INTO '/tmp/d1emu-attack.db'"}, 400, 7500, "SQLITE_ERROR"},
		{"over 100 KB", db.UUID, map[string]any{"sql": long(d1emu.MaxStatementBytes + 1)}, 400, 7500, d1emu.MessageTooBig},
		{"value over 2 MB", db.UUID, map[string]any{"sql": "SELECT zeroblob(2000001)"}, 400, 7500, "string or blob too big: SQLITE_TOOBIG"},
		{"long LIKE pattern", db.UUID, map[string]any{"sql": "SELECT 'a' LIKE ?", "params": []any{strings.Repeat("a", 51)}}, 400, 7500, "LIKE or GLOB pattern too complex: SQLITE_ERROR"},
		{"empty", db.UUID, map[string]any{"sql": "  -- nothing\n"}, 400, 7500, d1emu.MessageNoStatement},
		{"no sql", db.UUID, map[string]any{"params": []any{}}, 400, 7400, "sql is required"},
		{"sql and batch", db.UUID, map[string]any{"sql": "SELECT 1", "batch": []any{map[string]any{"sql": "SELECT 1"}}}, 400, 7400, "not both"},
		{"not JSON", db.UUID, []byte(`{"sql":`), 400, 7400, "Invalid request body"},
		{"params not an array", db.UUID, map[string]any{"sql": "SELECT ?", "params": "x"}, 400, 7400, "params must be an array"},
		{"object param", db.UUID, map[string]any{"sql": "SELECT ?", "params": []any{map[string]any{"a": 1}}}, 400, 7500, "D1_TYPE_ERROR"},
		{"synthetic", syn.UUID, map[string]any{"sql": "SELECT 1"}, 400, 7500, d1emu.MessageSyntheticQueries},
		{"unknown database", "00000000-0000-4000-8000-000000000000", map[string]any{"sql": "SELECT 1"}, 404, 7404, "could not be found"},
	}
	for _, tt := range tests {
		for _, ep := range []string{"query", "raw"} {
			status, env, _ := e.query(tt.id, ep, tt.body)
			if status != tt.status || env.Success || len(env.Errors) != 1 || env.Errors[0].Code != tt.code || !strings.Contains(env.Errors[0].Message, tt.msg) {
				t.Errorf("%s (%s): HTTP %d %+v; want HTTP %d code %d %q", tt.name, ep, status, env.Errors, tt.status, tt.code, tt.msg)
			}
		}
	}
	if _, err := os.Stat("/tmp/d1emu-attack.db"); err == nil {
		t.Error("a query wrote /tmp/d1emu-attack.db")
	}
	// A statement of exactly 100,000 bytes passes.
	if got := e.mustQuery(db.UUID, long(d1emu.MaxStatementBytes)); len(got) != 1 || len(got[0]) < d1emu.MaxStatementBytes-20 {
		t.Errorf("100,000-byte statement: %.40v", got)
	}
}

func TestQueryIsAtomic(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	before := e.bookmark(db.UUID)
	status, env, _ := e.query(db.UUID, "query", map[string]any{"sql": "INSERT INTO users (name) VALUES ('cy'); CREATE TABLE t (a); INSERT INTO nope VALUES (1)"})
	if status != 400 || env.Success {
		t.Fatalf("HTTP %d %+v, want the third statement to fail", status, env.Errors)
	}
	if got := e.mustQuery(db.UUID, "SELECT count(*) FROM users; SELECT count(*) FROM sqlite_schema WHERE name = 't'"); strings.Join(got, " ") != "[[2]] [[0]]" {
		t.Errorf("after a failed request: %v, want nothing written", got)
	}
	if after := e.bookmark(db.UUID); after != before {
		t.Errorf("a failed request moved the bookmark from %s to %s", before, after)
	}
}

func TestQueryMetaAndBookmark(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	tests := []struct {
		sql                    string
		changedDB              bool
		changes, read, written int64
		lastRowID              float64
		moves                  bool // the bookmark
	}{
		{"SELECT * FROM users", false, 0, 2, 0, 0, false},
		{"INSERT INTO users (name) VALUES ('cy')", true, 1, 0, 1, 3, true},
		{"UPDATE users SET name = name || '!'", true, 3, 0, 3, 3, true},
		{"UPDATE users SET name = 'x' WHERE 0", false, 0, 0, 0, 3, false},
		{"CREATE TABLE t (a)", true, 0, 0, 0, 3, true},
		{"SELECT 1", false, 0, 1, 0, 3, false},
	}
	for _, tt := range tests {
		before := e.bookmark(db.UUID)
		status, env, entries := e.query(db.UUID, "query", map[string]any{"sql": tt.sql})
		if status != 200 || !env.Success || len(entries) != 1 {
			t.Fatalf("%s: HTTP %d %+v", tt.sql, status, env.Errors)
		}
		m := entries[0].Meta
		if m.ChangedDB != tt.changedDB || m.Changes != tt.changes || m.RowsRead != tt.read || m.RowsWritten != tt.written || m.LastRowID != tt.lastRowID {
			t.Errorf("%s: meta %+v, want changed_db %v changes %d rows_read %d rows_written %d last_row_id %v", tt.sql, m, tt.changedDB, tt.changes, tt.read, tt.written, tt.lastRowID)
		}
		if m.SizeAfter <= 0 || m.ServedByRegion != "ENAM" || !m.ServedByPrimary || m.ServedByColo == "" || m.Duration < 0 || !entries[0].Success {
			t.Errorf("%s: meta %+v", tt.sql, m)
		}
		if after := e.bookmark(db.UUID); (after != before) != tt.moves || after < before {
			t.Errorf("%s: bookmark %s → %s; want it to move: %v", tt.sql, before, after, tt.moves)
		}
	}
}

func TestQueryLimits(t *testing.T) {
	e := newEmu(t, d1emu.Options{MaxResponseBytes: 10_000, MaxQueryDuration: 200 * time.Millisecond})
	db := e.mustCreate("app", smallSeed)
	big := "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT i, 'row number ' || i FROM n"
	status, env, _ := e.query(db.UUID, "raw", map[string]any{"sql": big})
	if status != 400 || !strings.Contains(env.Errors[0].Message, "over the 10000-byte response limit") {
		t.Errorf("large result: HTTP %d %+v", status, env.Errors)
	}
	if got := e.mustQuery(db.UUID, big+" LIMIT 10"); !strings.HasPrefix(got[0], `[[1,"row number 1"]`) {
		t.Errorf("a page of it: %v", got)
	}
	slow := "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
	status, env, _ = e.query(db.UUID, "query", map[string]any{"sql": "INSERT INTO users (name) VALUES ('late'); " + slow})
	if status != 400 || !strings.Contains(env.Errors[0].Message, "SQLITE_INTERRUPT") {
		t.Errorf("endless query: HTTP %d %+v", status, env.Errors)
	}
	if got := e.mustQuery(db.UUID, "SELECT count(*) FROM users"); got[0] != "[[2]]" {
		t.Errorf("after the interrupted request: %v users, want its insert rolled back", got)
	}
}

func TestQueryWhileBusy(t *testing.T) {
	e := newEmu(t, d1emu.Options{ExportPolls: 1})
	db := e.mustCreate("app", smallSeed)
	_, res := e.export(db.UUID, "")
	status, env, _ := e.query(db.UUID, "query", map[string]any{"sql": "SELECT 1"})
	if status != 400 || env.Errors[0].Code != 7500 || env.Errors[0].Message != d1emu.MessageBusy {
		t.Errorf("query during an export: HTTP %d %+v", status, env.Errors)
	}
	e.export(db.UUID, res.AtBookmark) // completes it
	if got := e.mustQuery(db.UUID, "SELECT 1"); got[0] != "[[1]]" {
		t.Errorf("after the export: %v", got)
	}

	e.SetImportPolls(1)
	sql := []byte("CREATE TABLE t (a);\n")
	_, init := e.importCall(db.UUID, map[string]any{"action": "init", "etag": md5hex(sql)})
	e.put(init.UploadURL, sql)
	_, ing := e.importCall(db.UUID, map[string]any{"action": "ingest", "etag": md5hex(sql), "filename": init.Filename})
	status, env, _ = e.query(db.UUID, "raw", map[string]any{"sql": "SELECT 1"})
	if status != 400 || env.Errors[0].Message != d1emu.MessageImportBusy {
		t.Errorf("query during an import: HTTP %d %+v", status, env.Errors)
	}
	e.importCall(db.UUID, map[string]any{"action": "poll", "current_bookmark": ing.AtBookmark})
	e.importCall(db.UUID, map[string]any{"action": "poll", "current_bookmark": ing.AtBookmark})
	if got := e.mustQuery(db.UUID, "SELECT count(*) FROM t"); got[0] != "[[0]]" {
		t.Errorf("after the import: %v", got)
	}
}

// TestQuerySDK decodes the answers with cloudflare-go's own types.
func TestQuerySDK(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	ctx := context.Background()
	svc := cfd1.NewDatabaseService(e.sdkOptions()...)

	if _, err := svc.Query(ctx, db.UUID, e.sdkQuery("SELECT id, name FROM users WHERE id > ? ORDER BY id; SELECT x'0102' AS b", "1")); err == nil || !strings.Contains(err.Error(), d1emu.MessageParamsNotLast) {
		t.Errorf("Query with parameters in the first statement: %v", err)
	}
	page, err := svc.Query(ctx, db.UUID, e.sdkQuery("SELECT x'0102' AS b; SELECT id, name FROM users WHERE id > ? ORDER BY id", "1"))
	if err != nil || len(page.Result) != 2 {
		t.Fatalf("Query = %+v, %v", page, err)
	}
	if got := fmt.Sprint(page.Result[0].Results, page.Result[1].Results); got != "[map[b:[1 2]]] [map[id:2 name:bob]]" {
		t.Errorf("Query results %s", got)
	}
	if m := page.Result[1].Meta; !page.Result[1].Success || m.RowsRead != 1 || m.ServedByRegion != cfd1.QueryResultMetaServedByRegionEnam || m.SizeAfter <= 0 || m.Timings.SqlDurationMs != m.Duration {
		t.Errorf("Query meta %+v", m)
	}

	raw, err := svc.Raw(ctx, db.UUID, e.sdkRaw("INSERT INTO users (name) VALUES (?) RETURNING id, name", "cy"))
	if err != nil || len(raw.Result) != 1 {
		t.Fatalf("Raw = %+v, %v", raw, err)
	}
	r := raw.Result[0]
	if got := fmt.Sprint(r.Results.Columns, r.Results.Rows); got != "[id name] [[3 cy]]" || !r.Meta.ChangedDB || r.Meta.Changes != 1 || r.Meta.LastRowID != 3 {
		t.Errorf("Raw = %s, meta %+v", got, r.Meta)
	}

	_, err = svc.Raw(ctx, db.UUID, e.sdkRaw("SELECT * FROM nope"))
	var apiErr *cfd1.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || len(apiErr.Errors) != 1 || apiErr.Errors[0].Code != 7500 || apiErr.Errors[0].Message != "no such table: nope: SQLITE_ERROR" {
		t.Errorf("Raw of a missing table: %v", err)
	}
}

// sdkQuery and sdkRaw are the SDK's parameters for one query.
func (e *emu) sdkQuery(sql string, params ...string) cfd1.DatabaseQueryParams {
	var b cfd1.DatabaseQueryParamsBodyD1SingleQuery
	b.Sql.Value, b.Sql.Present = sql, true
	b.Params.Value, b.Params.Present = params, params != nil
	var p cfd1.DatabaseQueryParams
	p.AccountID.Value, p.AccountID.Present = e.AccountID(), true
	p.Body = b
	return p
}

func (e *emu) sdkRaw(sql string, params ...string) cfd1.DatabaseRawParams {
	var b cfd1.DatabaseRawParamsBodyD1SingleQuery
	b.Sql.Value, b.Sql.Present = sql, true
	b.Params.Value, b.Params.Present = params, params != nil
	var p cfd1.DatabaseRawParams
	p.AccountID.Value, p.AccountID.Present = e.AccountID(), true
	p.Body = b
	return p
}
