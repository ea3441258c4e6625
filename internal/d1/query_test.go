package d1_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
)

func TestRaw(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	c := f.client(t, nil)
	ctx := context.Background()
	got, err := c.Raw(ctx, f.db.UUID, `SELECT quote(id), quote(note) FROM users ORDER BY id; SELECT count(*) AS n FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d results, want one per statement (2)", len(got))
	}
	want := [][]any{{"1", "'it''s\nmulti-line'"}, {"2", "NULL"}}
	if g, w := jsonText(got[0].Rows), jsonText(want); g != w {
		t.Errorf("rows = %s, want %s", g, w)
	}
	if g, w := strings.Join(got[1].Columns, ","), "n"; g != w {
		t.Errorf("columns = %s, want %s", g, w)
	}
	// Without quote() values cross as JSON numbers: 2^63-1 loses precision.
	big, err := c.Raw(ctx, f.db.UUID, `SELECT 9223372036854775807, quote(9223372036854775807)`)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := jsonText(big[0].Rows[0]), `[9223372036854776000,"9223372036854775807"]`; g != w {
		t.Errorf("2^63-1 = %s, want %s", g, w)
	}
}

func TestRawErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{ExportPolls: 5})
	c := f.client(t, nil)
	ctx := context.Background()
	if _, err := c.Raw(ctx, f.db.UUID, `SELECT * FROM missing`); !errors.As(err, new(*d1.QueryError)) || !strings.Contains(err.Error(), "no such table") {
		t.Errorf("missing table: %v, want QueryError with D1's message", err)
	}
	if _, err := c.Raw(ctx, "00000000-0000-0000-0000-000000000000", `SELECT 1`); !errors.As(err, new(*d1.NotFoundError)) {
		t.Errorf("unknown database: %v, want NotFoundError", err)
	}
	// An export running blocks queries: busy, retryable.
	if _, err := c.StartExport(ctx, f.db.UUID); err != nil {
		t.Fatal(err)
	}
	_, err := c.Raw(ctx, f.db.UUID, `SELECT 1`)
	if !errors.As(err, new(*d1.ExportBusyError)) || !d1.IsRetryable(err) {
		t.Errorf("query during export: %v, want a retryable ExportBusyError", err)
	}
	f.emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointRaw, Kind: d1emu.FaultRateLimit, RetryAfter: 300})
	if _, err := c.Raw(ctx, f.db.UUID, `SELECT 1`); !errors.As(err, new(*d1.RateLimitError)) {
		t.Errorf("429: %v, want RateLimitError", err)
	}
}

func TestBookmark(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	c := f.client(t, nil)
	ctx := context.Background()
	b0, err := c.Bookmark(ctx, f.db.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if !bookmarkRE.MatchString(b0) {
		t.Errorf("bookmark %q has the wrong shape", b0)
	}
	// An unchanged database keeps its bookmark, and an export of it starts there.
	again, err := c.Bookmark(ctx, f.db.UUID)
	if err != nil || again != b0 {
		t.Errorf("second read = %q (%v), want %q", again, err, b0)
	}
	st, err := c.StartExport(ctx, f.db.UUID)
	if err != nil || st.Bookmark != b0 {
		t.Errorf("export bookmark = %q (%v), want the time travel bookmark %q", st.Bookmark, err, b0)
	}
	f.emu.MustExec(t, f.db.UUID, `INSERT INTO users (name) VALUES ('cy')`)
	b1, err := c.Bookmark(ctx, f.db.UUID)
	if err != nil || b1 <= b0 {
		t.Errorf("after a write = %q (%v), want a bookmark after %q", b1, err, b0)
	}
}

// TestBookmarkHostile: a bookmark becomes part of object keys; an answer
// that could climb out of its folder is refused.
func TestBookmarkHostile(t *testing.T) {
	t.Parallel()
	for _, bm := range []string{"", "../../etc", "a/b", strings.Repeat("a", 200), "00000001-\n"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"success": true, "errors": []any{}, "messages": []any{}, "result": map[string]any{"bookmark": bm}})
		}))
		cfg := d1.NewConfig(strings.Repeat("a", 32), "t", srv.URL)
		c, err := d1.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Bookmark(context.Background(), "db")
		srv.Close()
		if !errors.As(err, new(*d1.BadAnswerError)) {
			t.Errorf("bookmark %q: %v, want BadAnswerError", bm, err)
		}
	}
}

func TestJurisdiction(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	eu := f.emu.MustCreate(t, "eu-app", seed, d1emu.WithJurisdiction("eu"))
	c := f.client(t, nil)
	ctx := context.Background()
	for _, ref := range []string{"eu-app", eu.UUID} {
		got, err := c.Resolve(ctx, ref)
		if err != nil || got.Jurisdiction != "eu" {
			t.Errorf("Resolve(%s) = %+v (%v), want jurisdiction eu", ref, got, err)
		}
	}
	got, err := c.Resolve(ctx, "app")
	if err != nil || got.Jurisdiction != "" {
		t.Errorf("Resolve(app) = %+v (%v), want no jurisdiction", got, err)
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
