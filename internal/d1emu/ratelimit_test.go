package d1emu_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/d1emu"
)

func TestRateLimit(t *testing.T) {
	clk := newClock()
	e := newEmu(t, d1emu.Options{Now: clk.Now, RateLimit: d1emu.RateLimit{Requests: 5, Window: 2 * time.Second, Block: 2500 * time.Millisecond}})
	db := e.mustCreate("app", smallSeed)
	list := e.srv.URL + "/client/v4/accounts/" + e.AccountID() + "/d1/database"
	url := e.runExport(db.UUID).Result.SignedURL // 1 call

	type want struct {
		status     int
		retryAfter string
	}
	steps := []struct {
		advance time.Duration
		method  string
		url     string
		want    want
	}{
		{0, "GET", list, want{200, ""}},
		{0, "GET", e.dbURL(db.UUID), want{200, ""}},
		{500 * time.Millisecond, "GET", list, want{200, ""}},
		{0, "GET", e.dbURL(db.UUID) + "/time_travel/bookmark", want{200, ""}}, // the 5th call within 2 s
		{0, "GET", list, want{429, "3"}},                                      // the 6th: blocked for 2.5 s
		{0, "POST", e.dbURL(db.UUID) + "/query", want{429, "3"}},              // every call
		{0, "GET", e.srv.URL + "/client/v4/nowhere", want{429, "3"}},          // even one with no route
		{0, "GET", url, want{200, ""}},                                        // a signed URL is not the API
		{0, "GET", e.srv.URL + "/__emu/requests", want{200, ""}},              // nor a control endpoint
		{time.Second, "GET", list, want{429, "2"}},                            // 1.5 s left
		{1400 * time.Millisecond, "GET", list, want{429, "1"}},                // 0.1 s left
		{100 * time.Millisecond, "GET", list, want{200, ""}},                  // the block is over
		{0, "GET", list, want{200, ""}},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		var body any
		if s.method == "POST" {
			body = map[string]any{"sql": "SELECT 1"}
		}
		r := e.do(s.method, s.url, e.Token(), body)
		got := want{r.status, r.header.Get("Retry-After")}
		if got != s.want {
			t.Errorf("step %d: %s %s: %+v, want %+v", i, s.method, s.url, got, s.want)
		}
		if got.status == 429 {
			wantEnvelopeError(429, 971, d1emu.MessageRateLimited)(t, r)
		}
	}
}

// TestRateLimitWindowSlides: calls spread over more than a window never
// trip the limit.
func TestRateLimitWindowSlides(t *testing.T) {
	clk := newClock()
	e := newEmu(t, d1emu.Options{Now: clk.Now, RateLimit: d1emu.RateLimit{Requests: 3, Window: time.Second}})
	db := e.mustCreate("app", smallSeed)
	var got []int
	for range 9 {
		got = append(got, e.do("GET", e.dbURL(db.UUID), e.Token(), nil).status)
		clk.Advance(400 * time.Millisecond) // 2.5 calls per second
	}
	if fmt.Sprint(got) != "[200 200 200 200 200 200 200 200 200]" {
		t.Errorf("statuses %v, want every call through", got)
	}
	for range 3 {
		e.do("GET", e.dbURL(db.UUID), e.Token(), nil)
	}
	r := e.do("GET", e.dbURL(db.UUID), e.Token(), nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" {
		t.Errorf("burst: HTTP %d Retry-After %q; want 429 and the window as block", r.status, r.header.Get("Retry-After"))
	}
}

func TestRateLimitOptions(t *testing.T) {
	if d1emu.DefaultRateLimit != (d1emu.RateLimit{Requests: 1200, Window: 5 * time.Minute, Block: 5 * time.Minute}) {
		t.Errorf("DefaultRateLimit = %+v, want Cloudflare's 1200 per 5 minutes, blocked 5 minutes", d1emu.DefaultRateLimit)
	}
	if _, err := d1emu.New(d1emu.Options{RateLimit: d1emu.RateLimit{Requests: -1}}); err == nil {
		t.Error("a negative rate limit: no error")
	}
}
