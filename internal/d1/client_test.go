package d1_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
)

const seed = `
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT);
INSERT INTO users (name, note) VALUES ('ada', 'it''s
multi-line'), ('bob', NULL);
`

type fixture struct {
	emu *d1emutest.Emulator
	db  d1emu.Database
}

func newFixture(t *testing.T, opts d1emu.Options) *fixture {
	t.Helper()
	emu := d1emutest.Start(t, opts)
	return &fixture{emu: emu, db: emu.MustCreate(t, "app", seed)}
}

func (f *fixture) client(t *testing.T, mod func(*d1.Config)) *d1.Client {
	t.Helper()
	cfg := d1.NewConfig(f.emu.AccountID(), f.emu.Token(), f.emu.BaseURL)
	cfg.HTTPClient, cfg.MaxRetries, cfg.MaxRetryAfter = f.emu.HTTP.Client(), 1, 2*time.Second
	if mod != nil {
		mod(&cfg)
	}
	c, err := d1.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var bookmarkRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$`)

func TestExportLifecycle(t *testing.T) {
	t.Parallel()
	for _, polls := range []int{0, 1, 3} {
		f := newFixture(t, d1emu.Options{ExportPolls: polls})
		c := f.client(t, nil)
		ctx := context.Background()
		st, err := c.StartExport(ctx, f.db.UUID)
		if err != nil {
			t.Fatalf("polls=%d: start: %v", polls, err)
		}
		if !bookmarkRE.MatchString(st.Bookmark) {
			t.Errorf("bookmark %q has the wrong shape", st.Bookmark)
		}
		n := 0
		for st.Status == "active" {
			n++
			if st, err = c.PollExport(ctx, f.db.UUID, st.Bookmark); err != nil {
				t.Fatalf("polls=%d: poll %d: %v", polls, n, err)
			}
		}
		if got, want := n, polls; got != want {
			t.Errorf("polls until complete = %d, want %d", got, want)
		}
		if st.Status != "complete" || st.SignedURL == "" || st.Filename == "" {
			t.Fatalf("final status = %+v, want complete with URL and filename", st)
		}
		// Every export call carries output_format "polling", and polls the bookmark.
		for _, r := range f.emu.Requests() {
			if r.Endpoint != d1emu.EndpointExport && r.Endpoint != d1emu.EndpointPoll {
				continue
			}
			var body map[string]any
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatalf("body %q: %v", r.Body, err)
			}
			if body["output_format"] != "polling" {
				t.Errorf("%s body %s lacks output_format polling", r.Endpoint, r.Body)
			}
			if r.Endpoint == d1emu.EndpointPoll && body["current_bookmark"] != st.Bookmark {
				t.Errorf("poll body %s, want current_bookmark %s", r.Body, st.Bookmark)
			}
		}
		// An unchanged database exports at the same bookmark (idempotent reruns).
		again, err := c.StartExport(ctx, f.db.UUID)
		if err != nil && !errors.As(err, new(*d1.ExportBusyError)) {
			t.Fatal(err)
		}
		if err == nil && again.Bookmark != st.Bookmark {
			t.Errorf("second export bookmark %s, want %s", again.Bookmark, st.Bookmark)
		}
	}
}

func TestDownload(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	c := f.client(t, nil)
	ctx := context.Background()
	st, err := c.StartExport(ctx, f.db.UUID)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.NewBuffer(f.emu.MustDump(t, f.db.UUID))
	dl, err := c.Download(ctx, st.SignedURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dl.Body)
	dl.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want.Bytes()) || dl.Size != int64(want.Len()) {
		t.Fatalf("downloaded %d bytes (size %d), want the emulator's %d-byte dump", len(got), dl.Size, want.Len())
	}
	if !strings.HasPrefix(string(got), "PRAGMA defer_foreign_keys=TRUE;\n") {
		t.Errorf("dump starts %q", got[:min(len(got), 40)])
	}
	for _, r := range f.emu.Requests() {
		if r.Endpoint == d1emu.EndpointDownload && r.HasAuth {
			t.Error("download sent an Authorization header; the signed URL must go without Cloudflare credentials")
		}
	}
}

// TestOutcomes drives every failure the reference lists through the client
// and checks the class a caller acts on, and that no message leaks the
// token or the signed URL.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	type call func(context.Context, *d1.Client, *fixture) error
	start := func(ctx context.Context, c *d1.Client, f *fixture) error {
		_, err := c.StartExport(ctx, f.db.UUID)
		return err
	}
	poll := func(ctx context.Context, c *d1.Client, f *fixture) error {
		st, err := c.StartExport(ctx, f.db.UUID)
		if err != nil {
			return err
		}
		_, err = c.PollExport(ctx, f.db.UUID, st.Bookmark)
		return err
	}
	download := func(ctx context.Context, c *d1.Client, f *fixture) error {
		st, err := c.StartExport(ctx, f.db.UUID)
		if err != nil {
			return err
		}
		for st.Status == "active" {
			if st, err = c.PollExport(ctx, f.db.UUID, st.Bookmark); err != nil {
				return err
			}
		}
		dl, err := c.Download(ctx, st.SignedURL, 0)
		if err != nil {
			return err
		}
		defer dl.Body.Close()
		_, err = io.Copy(io.Discard, dl.Body)
		return err
	}
	list := func(ctx context.Context, c *d1.Client, f *fixture) error {
		_, err := c.List(ctx)
		return err
	}
	get := func(ctx context.Context, c *d1.Client, f *fixture) error {
		_, err := c.Get(ctx, f.db.UUID)
		return err
	}
	tests := []struct {
		name      string
		polls     int
		fault     *d1emu.Fault
		token     string
		call      call
		want      any // pointer to a pointer of the wanted error type, or nil
		retryable bool
		restart   bool
	}{
		{name: "ok start", call: start},
		{name: "rate limit short retry-after is waited out", fault: &d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultRateLimit, RetryAfter: 1}, call: start},
		{name: "rate limit long retry-after", fault: &d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultRateLimit, RetryAfter: 300}, call: start, want: new(*d1.RateLimitError), retryable: true},
		{name: "5xx once is retried", fault: &d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultServerError}, call: start},
		{name: "5xx persists", fault: &d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultServerError, Times: 5}, call: start, want: new(*d1.UnavailableError), retryable: true},
		{name: "reset persists", fault: &d1emu.Fault{Endpoint: "list", Kind: d1emu.FaultReset, Times: 5}, call: list, want: new(*d1.UnavailableError), retryable: true},
		{name: "busy export", fault: &d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultBusy}, call: start, want: new(*d1.ExportBusyError), retryable: true},
		{name: "not currently exporting", polls: 2, fault: &d1emu.Fault{Endpoint: "poll", Kind: d1emu.FaultNotExporting}, call: poll, want: new(*d1.ExportNotRunningError), restart: true},
		{name: "bad token", token: "wrong-token", call: start, want: new(*d1.AuthError)},
		{name: "bad token fault on get", fault: &d1emu.Fault{Endpoint: "get", Kind: d1emu.FaultBadToken}, call: get, want: new(*d1.AuthError)},
		{name: "truncated download", fault: &d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultTruncate}, call: download, want: new(*d1.DownloadError), retryable: true},
		{name: "expired download", fault: &d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultExpired}, call: download, want: new(*d1.DownloadExpiredError), restart: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, d1emu.Options{ExportPolls: tt.polls})
			if tt.fault != nil {
				f.emu.InjectFault(*tt.fault)
			}
			c := f.client(t, func(cfg *d1.Config) {
				if tt.token != "" {
					cfg.APIToken = tt.token
				}
			})
			err := tt.call(context.Background(), c, f)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got success, want %T", tt.want)
			}
			if !errors.As(err, tt.want) {
				t.Fatalf("got %T (%v), want %T", err, err, tt.want)
			}
			if got := d1.IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retryable)
			}
			if got := d1.NeedsNewExport(err); got != tt.restart {
				t.Errorf("NeedsNewExport = %v, want %v", got, tt.restart)
			}
			for _, secret := range []string{f.emu.Token(), "X-Amz-Signature", "/__emu/dumps/"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains %q", err, secret)
				}
			}
		})
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	f.emu.InjectFault(d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultRateLimit, RetryAfter: 120})
	_, err := f.client(t, nil).StartExport(context.Background(), f.db.UUID)
	var rl *d1.RateLimitError
	if !errors.As(err, &rl) {
		t.Fatalf("got %v, want RateLimitError", err)
	}
	if got, want := rl.RetryAfter, 120*time.Second; got != want {
		t.Errorf("RetryAfter = %s, want %s", got, want)
	}
}

func TestExportErrorStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{ExportPolls: 1})
	vt, err := f.emu.CreateDatabase("search", "CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO docs VALUES ('hello');")
	if err != nil {
		t.Fatal(err)
	}
	c := f.client(t, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		db   string
		f    *d1emu.Fault
	}{
		{"virtual table", vt.UUID, nil},
		{"injected", f.db.UUID, &d1emu.Fault{Endpoint: "any", Kind: d1emu.FaultExportError}},
	} {
		if tt.f != nil {
			f.emu.InjectFault(*tt.f)
		}
		st, err := c.StartExport(ctx, tt.db)
		for err == nil && st.Status == "active" {
			st, err = c.PollExport(ctx, tt.db, st.Bookmark)
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if st.Status != "error" || !strings.Contains(strings.ToLower(st.Error), "virtual table") {
			t.Errorf("%s: status %q error %q, want error about virtual tables", tt.name, st.Status, st.Error)
		}
	}
	msg := (&d1.ExportFailedError{Database: "search", Message: "cannot export databases with Virtual Tables (fts5)"}).Error()
	if !strings.Contains(msg, "FTS5") {
		t.Errorf("ExportFailedError %q does not tell what to do", msg)
	}
}

func TestDatabases(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	other, err := f.emu.CreateDatabase("other", "CREATE TABLE t(x);")
	if err != nil {
		t.Fatal(err)
	}
	c := f.client(t, nil)
	ctx := context.Background()
	dbs, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(dbs), 2; got != want {
		t.Fatalf("List: %d databases, want %d", got, want)
	}
	for _, tt := range []struct {
		ref, wantID string
	}{
		{"app", f.db.UUID},
		{"other", other.UUID},
		{f.db.UUID, f.db.UUID},
		{strings.ToUpper(other.UUID), other.UUID},
	} {
		got, err := c.Resolve(ctx, tt.ref)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", tt.ref, err)
		}
		if got.UUID != tt.wantID {
			t.Errorf("Resolve(%q) = %s, want %s", tt.ref, got.UUID, tt.wantID)
		}
	}
	got, err := c.Get(ctx, f.db.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "app" || got.NumTables < 1 || got.FileSize <= 0 {
		t.Errorf("Get = %+v, want app with tables and a size", got)
	}
	for _, ref := range []string{"missing", "00000000-0000-0000-0000-000000000000"} {
		if _, err := c.Resolve(ctx, ref); !errors.As(err, new(*d1.NotFoundError)) {
			t.Errorf("Resolve(%q) = %v, want NotFoundError", ref, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	good := d1.NewConfig(strings.Repeat("a", 32), "t", "https://api.example.com/client/v4")
	for _, tt := range []struct {
		name string
		mod  func(*d1.Config)
		want string
	}{
		{"no account", func(c *d1.Config) { c.AccountID = "" }, "account ID is empty"},
		{"bad account", func(c *d1.Config) { c.AccountID = "xyz" }, "not 32 lower-case hex"},
		{"no token", func(c *d1.Config) { c.APIToken = "" }, "API token is empty"},
		{"bad url", func(c *d1.Config) { c.BaseURL = "ftp://x" }, "not an http(s) URL"},
		{"negative retries", func(c *d1.Config) { c.MaxRetries = -1 }, "negative"},
		{"no timeout", func(c *d1.Config) { c.RequestTimeout = 0 }, "must be positive"},
	} {
		cfg := good
		tt.mod(&cfg)
		_, err := d1.New(cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := d1.New(good); err != nil {
		t.Errorf("good config: %v", err)
	}
}
