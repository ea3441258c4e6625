package d1emu_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6/option"
	"github.com/d1backup/d1backup/internal/d1emu"
	_ "modernc.org/sqlite"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type emu struct {
	*d1emu.Server
	t   *testing.T
	srv *httptest.Server
	hc  *http.Client
}

func newEmu(t *testing.T, opts d1emu.Options) *emu {
	t.Helper()
	s, err := d1emu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	// No keep-alives: an injected reset must not be retried silently by
	// the transport on a reused connection.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return &emu{Server: s, t: t, srv: srv, hc: hc}
}

func (e *emu) mustCreate(name, seed string) d1emu.Database {
	e.t.Helper()
	db, err := e.CreateDatabase(name, seed)
	if err != nil {
		e.t.Fatal(err)
	}
	return db
}

func (e *emu) dbURL(id string) string {
	return e.srv.URL + "/client/v4/accounts/" + e.AccountID() + "/d1/database/" + id
}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (e *emu) do(method, url, token string, body any) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				e.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.hc.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b, err: err}
}

// envelope is the API envelope, result kept raw.
type envelope struct {
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Messages   []any           `json:"messages"`
	Result     json.RawMessage `json:"result"`
	ResultInfo *struct {
		Page       int `json:"page"`
		PerPage    int `json:"per_page"`
		Count      int `json:"count"`
		TotalCount int `json:"total_count"`
	} `json:"result_info"`
}

type exportResult struct {
	Success    bool     `json:"success"`
	Type       string   `json:"type"`
	AtBookmark string   `json:"at_bookmark"`
	Status     string   `json:"status"`
	Messages   []string `json:"messages"`
	Error      string   `json:"error"`
	Result     *struct {
		Filename  string `json:"filename"`
		SignedURL string `json:"signed_url"`
	} `json:"result"`
}

func (e *emu) envelope(r response) envelope {
	e.t.Helper()
	if r.err != nil {
		e.t.Fatalf("request failed: %v", r.err)
	}
	var env envelope
	if err := json.Unmarshal(r.body, &env); err != nil {
		e.t.Fatalf("not an envelope (HTTP %d): %v: %s", r.status, err, r.body)
	}
	if env.Errors == nil || env.Messages == nil {
		e.t.Fatalf("envelope lacks errors/messages arrays: %s", r.body)
	}
	return env
}

// export posts an export request (a poll when bookmark is set).
func (e *emu) export(id, bookmark string) (int, exportResult) {
	e.t.Helper()
	body := map[string]any{"output_format": "polling"}
	if bookmark != "" {
		body["current_bookmark"] = bookmark
	}
	r := e.do("POST", e.dbURL(id)+"/export", e.Token(), body)
	env := e.envelope(r)
	if !env.Success {
		e.t.Fatalf("export: HTTP %d %s", r.status, r.body)
	}
	var res exportResult
	if err := json.Unmarshal(env.Result, &res); err != nil {
		e.t.Fatal(err)
	}
	return r.status, res
}

// runExport starts an export and polls it to the end.
func (e *emu) runExport(id string) exportResult {
	e.t.Helper()
	_, res := e.export(id, "")
	for i := 0; res.Status == "active"; i++ {
		if i > 100 {
			e.t.Fatal("export never ends")
		}
		_, res = e.export(id, res.AtBookmark)
	}
	return res
}

func (e *emu) download(url string) response {
	e.t.Helper()
	return e.do("GET", url, "", nil)
}

func (e *emu) dump(id string) string {
	e.t.Helper()
	var b bytes.Buffer
	if _, err := e.WriteDump(context.Background(), id, &b); err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

// importDump loads a dump into a new SQLite database with foreign keys on,
// in one transaction as D1's import does.
func importDump(t *testing.T, dump string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "import.sqlite")+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("BEGIN;\n" + dump + "COMMIT;"); err != nil {
		t.Fatalf("import: %v", err)
	}
	return db
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rowsOf renders a table with SQLite's own quote(), ordered by rowid or
// primary key.
func rowsOf(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	cols, err := db.Query(`SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		t.Fatal(err)
	}
	var q []string
	for cols.Next() {
		var c string
		cols.Scan(&c)
		q = append(q, `quote("`+strings.ReplaceAll(c, `"`, `""`)+`")`)
	}
	cols.Close()
	rows, err := db.Query(`SELECT ` + strings.Join(q, "||','||") + ` FROM "` + strings.ReplaceAll(table, `"`, `""`) + `"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// rowsOfQuery runs a query of one column, rendered as text.
func rowsOfQuery(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sdkOptions point cloudflare-go at the emulator, without retries.
func (e *emu) sdkOptions() []option.RequestOption {
	return []option.RequestOption{option.WithBaseURL(e.srv.URL + "/client/v4"), option.WithAPIToken(e.Token()),
		option.WithMaxRetries(0), option.WithHTTPClient(e.srv.Client())}
}
