package d1emu

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Cloudflare's documented API rate limit: over 1200 requests in 5 minutes,
// every call answers 429 for the next 5 minutes.
const (
	DefaultRateLimitRequests = 1200
	DefaultRateLimitWindow   = 5 * time.Minute
)

// RateLimit models Cloudflare's API rate limit: once more than Requests
// API calls arrived within Window (a sliding window), every API call
// answers HTTP 429, code 971, with Retry-After (whole seconds until the
// block ends, at least 1) for Block. Calls answered 429 do not count.
// Signed URLs and control endpoints are outside the API and never limited.
// Requests 0 turns the limit off; Window and Block default to
// DefaultRateLimitWindow and the window.
type RateLimit struct {
	Requests int
	Window   time.Duration
	Block    time.Duration
}

// DefaultRateLimit is Cloudflare's documented limit.
var DefaultRateLimit = RateLimit{Requests: DefaultRateLimitRequests, Window: DefaultRateLimitWindow, Block: DefaultRateLimitWindow}

func (l RateLimit) validate() error {
	if l.Requests < 0 || l.Window < 0 || l.Block < 0 {
		return fmt.Errorf("d1emu: RateLimit %+v: negative values", l)
	}
	return nil
}

func (l RateLimit) withDefaults() RateLimit {
	if l.Window == 0 {
		l.Window = DefaultRateLimitWindow
	}
	if l.Block == 0 {
		l.Block = l.Window
	}
	return l
}

// limiter enforces a RateLimit.
type limiter struct {
	RateLimit
	mu           sync.Mutex
	times        []time.Time // of the counted calls within the window, oldest first
	blockedUntil time.Time
}

func newLimiter(l RateLimit) *limiter { return &limiter{RateLimit: l} }

// admit counts a call at now; when the call is refused it says for how
// long the block lasts.
func (l *limiter) admit(now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.blockedUntil) {
		return l.blockedUntil.Sub(now), false
	}
	start := now.Add(-l.Window)
	i := 0
	for i < len(l.times) && !l.times[i].After(start) {
		i++
	}
	l.times = l.times[i:]
	if len(l.times) >= l.Requests {
		l.blockedUntil = now.Add(l.Block)
		l.times = l.times[:0]
		return l.Block, false
	}
	l.times = append(l.times, now)
	return 0, true
}

// limited answers 429 and reports true when the rate limit refuses c.
func (s *Server) limited(c *call) bool {
	if s.limit == nil {
		return false
	}
	wait, ok := s.limit.admit(s.now())
	if ok {
		return false
	}
	c.w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	s.writeError(c, http.StatusTooManyRequests, 971, MessageRateLimited)
	return true
}
