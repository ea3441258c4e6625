package d1emu

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Defaults applied by New.
const (
	DefaultAccountID   = "0f0e0d0c0b0a09080706050403020100"
	DefaultToken       = "emu-token"
	DefaultIdleTimeout = 30 * time.Second
	DefaultURLTTL      = time.Hour
	// DefaultExportPolls is what cmd/d1emu uses; the package's zero value
	// (0) completes exports in the first response.
	DefaultExportPolls = 2
	// DefaultMaxResponseBytes bounds one query or raw response. D1
	// documents no response limit for the REST API; 100 MB is the request
	// and response body limit of Cloudflare's Free and Pro plans.
	DefaultMaxResponseBytes = 100_000_000
	// DefaultMaxQueryDuration is D1's documented maximum SQL query duration.
	DefaultMaxQueryDuration = 30 * time.Second
)

// Options configure a Server. The zero value is usable.
type Options struct {
	AccountID string // default DefaultAccountID
	Token     string // accepted bearer token; default DefaultToken
	// Dir holds the SQLite files and dump files; a temporary directory
	// (removed by Close) when empty.
	Dir string
	// ExportPolls is how many polls (requests with current_bookmark) an
	// export stays "active" before completing: the Nth poll answers
	// "complete". 0 (the zero value) completes the export in the very first
	// response. Negative values are an error.
	ExportPolls int
	// ImportPolls is how many polls an import answers "active" before its
	// outcome (0: the first poll after ingest gets it). SetImportPolls
	// changes it later.
	ImportPolls int
	// IdleTimeout cancels an export that is not polled for this long;
	// default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// URLTTL is the signed URL lifetime; default DefaultURLTTL. A completed
	// export answers polls with the same URL until it expires, then "Not
	// currently exporting anything."
	URLTTL time.Duration
	// RateLimit models Cloudflare's API rate limit; the zero value turns
	// it off (see RateLimit).
	RateLimit RateLimit
	// MaxResponseBytes bounds the JSON answer of one query or raw request;
	// default DefaultMaxResponseBytes.
	MaxResponseBytes int
	// MaxQueryDuration bounds one query or raw request; default
	// DefaultMaxQueryDuration.
	MaxQueryDuration time.Duration
	Now              func() time.Time // default time.Now
	Logger           *slog.Logger     // default discards
}

// Request is one API or download request as the emulator saw it.
type Request struct {
	Method   string `json:"method"`
	Path     string `json:"path"` // without query
	Endpoint string `json:"endpoint"`
	Body     []byte `json:"body,omitempty"`
	HasAuth  bool   `json:"has_auth"`
	Status   int    `json:"status"` // 0 when the connection was dropped without a response
}

// Server is the emulator; it is an http.Handler.
type Server struct {
	opts   Options
	log    *slog.Logger
	key    []byte
	dir    string
	ownDir bool
	mux    *http.ServeMux
	limit  *limiter // nil without a rate limit

	// imp is the import path's state; its own lock, taken after d.mu.
	imp importState

	// mu guards what follows; it is taken after d.mu, never before.
	mu       sync.Mutex
	dbs      []*database
	dumps    map[string]*dumpFile
	faults   []*Fault
	requests []Request
	closed   bool
}

// New builds a Server.
func New(opts Options) (*Server, error) {
	if opts.ExportPolls < 0 || opts.ImportPolls < 0 {
		return nil, fmt.Errorf("d1emu: ExportPolls and ImportPolls must be >= 0, got %d and %d", opts.ExportPolls, opts.ImportPolls)
	}
	if err := opts.RateLimit.validate(); err != nil {
		return nil, err
	}
	if opts.AccountID == "" {
		opts.AccountID = DefaultAccountID
	}
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.URLTTL <= 0 {
		opts.URLTTL = DefaultURLTTL
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.MaxQueryDuration <= 0 {
		opts.MaxQueryDuration = DefaultMaxQueryDuration
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger, dumps: map[string]*dumpFile{}}
	s.imp.init(opts.ImportPolls)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.RateLimit.Requests > 0 {
		s.limit = newLimiter(opts.RateLimit.withDefaults())
	}
	s.key = make([]byte, 32)
	rand.Read(s.key)
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "d1emu-")
		if err != nil {
			return nil, fmt.Errorf("d1emu: temp dir: %w", err)
		}
		s.dir, s.ownDir = dir, true
	} else {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("d1emu: dir: %w", err)
		}
		s.dir = opts.Dir
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "dumps"), 0o755); err != nil {
		return nil, fmt.Errorf("d1emu: dir: %w", err)
	}
	s.routes()
	return s, nil
}

// AccountID is the account the API answers for.
func (s *Server) AccountID() string { return s.opts.AccountID }

// Token is the accepted bearer token.
func (s *Server) Token() string { return s.opts.Token }

// ServeHTTP serves the D1 API under /client/v4, signed URLs and control
// endpoints under /__emu/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close closes the databases and removes the directory if New created it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	dbs := slices.Clone(s.dbs)
	s.mu.Unlock()
	var errs []error
	for _, d := range dbs {
		d.mu.Lock()
		if d.lite != nil {
			d.lite.close()
			d.lite = nil
		}
		if d.db != nil {
			errs = append(errs, d.db.Close())
			d.db = nil
		}
		d.mu.Unlock()
	}
	if s.ownDir {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

func (s *Server) now() time.Time { return s.opts.Now() }

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Requests returns the API and download requests seen, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ResetRequests forgets the requests seen.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}
