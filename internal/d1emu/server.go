// Package d1emu is an in-process emulator of the Cloudflare D1 REST API
// endpoints d1backup uses (list, get, export with polling, signed dump
// downloads), backed by real SQLite databases (modernc.org/sqlite) and
// producing dumps in D1's format. It injects the faults the backup pipeline
// must survive, and the real conditions (busy export, idle cancellation,
// expired URLs, virtual tables) arise on their own.
//
// Export lifecycle: the first request (no current_bookmark) snapshots the
// database into a dump file and answers "active" (HTTP 202) until
// Options.ExportPolls polls have been made; the last one answers "complete"
// with result.result.{filename,signed_url}. ExportPolls 0 completes in the
// first response. Later polls of the same bookmark repeat the URL until it
// expires (Options.URLTTL), then answer "Not currently exporting anything.";
// so does a poll after Options.IdleTimeout without polls. dump_options
// no_data, no_schema and tables are honoured (tables filters every object by
// its own name, sqlite_sequence included).
//
// Bookmarks are %08x-%08x-%08x-%032x: a per-database write counter
// (advanced by Exec, and by changes made to DBPath behind the emulator's
// back) then a hash of the database content, so an unchanged database gets
// the same bookmark again and any write a greater one.
//
// Dump format choices where D1 is not documented: the sqlite3 shell's .dump
// is followed (sqlite_sequence after all other tables; newline escape tokens
// \n, \012, (\nN) as in its unused_string; reals integral -> "N.0", else
// the shortest round-tripping form; ±Inf as ±9.0e+999); BLOBs are upper-case
// X'..'; text containing NUL is written as CAST(X'..' AS TEXT); only
// sqlite_stat1 rows follow "ANALYZE sqlite_schema;" (sqlite_stat4 needs a
// STAT4 build to import and is rebuilt by ANALYZE anyway).
//
// Other choices:
//   - A wrong account id in the path answers HTTP 403, code 7403 ("The given
//     account is not valid or is not authorized to access this service").
//   - Injected faults are checked before authentication, the way an edge
//     rate limiter answers before the API sees the request.
//   - The signed URL points back at the host the client called
//     (/__emu/dumps/<id>?X-Amz-Date=..&X-Amz-Expires=..&X-Amz-Signature=..),
//     is an HMAC-SHA256 under a per-server random key, needs no auth, and
//     serves Content-Length, ETag and single byte ranges.
//   - Control endpoints under /__emu/ need no auth (loopback use only); see
//     controlRoutes.
package d1emu

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	_ "modernc.org/sqlite" // driver "sqlite"
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
	// IdleTimeout cancels an export that is not polled for this long;
	// default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// URLTTL is the signed URL lifetime; default DefaultURLTTL. A completed
	// export answers polls with the same URL until it expires, then "Not
	// currently exporting anything."
	URLTTL time.Duration
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default discards
}

// Database describes an emulated database.
type Database struct {
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
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

	mu       sync.Mutex
	dbs      []*database
	dumps    map[string]*dumpFile
	faults   []*Fault
	requests []Request
	closed   bool
}

type database struct {
	Database
	path      string // SQLite file; "" for synthetic
	synthSize int64

	mu          sync.Mutex
	db          *sql.DB
	version     uint64 // write counter: leading field of the bookmark
	contentHash []byte // content hash seen at version; nil until an export computes it
	export      *export
}

// New builds a Server.
func New(opts Options) (*Server, error) {
	if opts.ExportPolls < 0 {
		return nil, fmt.Errorf("d1emu: ExportPolls must be >= 0, got %d", opts.ExportPolls)
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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger, dumps: map[string]*dumpFile{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
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

// ServeHTTP serves the D1 API under /client/v4, signed dump downloads under
// /__emu/dumps/ and control endpoints under /__emu/.
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

func openSQLite(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// register adds d under a unique name.
func (s *Server) register(d *database) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("d1emu: server closed")
	}
	for _, o := range s.dbs {
		if o.Name == d.Name {
			return fmt.Errorf("d1emu: a database named %q already exists", d.Name)
		}
	}
	s.dbs = append(s.dbs, d)
	return nil
}

func (s *Server) newDatabase(name string) (*database, error) {
	if name == "" {
		return nil, errors.New("d1emu: database name is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.dbs {
		if o.Name == name {
			return nil, fmt.Errorf("d1emu: a database named %q already exists", name)
		}
	}
	id := newUUID()
	return &database{
		Database: Database{UUID: id, Name: name, CreatedAt: s.now().UTC().Truncate(time.Millisecond)},
		path:     filepath.Join(s.dir, id+".sqlite"),
		version:  1,
	}, nil
}

// CreateDatabase creates a database from a new SQLite file and runs seedSQL
// (any number of statements) in it.
func (s *Server) CreateDatabase(name, seedSQL string) (Database, error) {
	d, err := s.newDatabase(name)
	if err != nil {
		return Database{}, err
	}
	db, err := openSQLite(d.path)
	if err != nil {
		return Database{}, fmt.Errorf("d1emu: create %s: %w", name, err)
	}
	if seedSQL != "" {
		if _, err := db.Exec(seedSQL); err != nil {
			db.Close()
			os.Remove(d.path)
			return Database{}, fmt.Errorf("d1emu: create %s: seed: %w", name, err)
		}
	}
	d.db = db
	if err := s.register(d); err != nil {
		db.Close()
		os.Remove(d.path)
		return Database{}, err
	}
	s.log.Info("database created", "name", name, "uuid", d.UUID)
	return d.Database, nil
}

// AddDatabaseFile serves a copy of the SQLite file at path (its main file
// only: checkpoint any WAL first).
func (s *Server) AddDatabaseFile(name, path string) (Database, error) {
	d, err := s.newDatabase(name)
	if err != nil {
		return Database{}, err
	}
	if err := copyFile(path, d.path); err != nil {
		return Database{}, fmt.Errorf("d1emu: add %s: %w", name, err)
	}
	db, err := openSQLite(d.path)
	if err == nil {
		var n int
		err = db.QueryRow(`SELECT count(*) FROM sqlite_schema`).Scan(&n)
		if err != nil {
			db.Close()
		}
	}
	if err != nil {
		os.Remove(d.path)
		return Database{}, fmt.Errorf("d1emu: add %s: %s is not a SQLite database: %w", name, path, err)
	}
	d.db = db
	if err := s.register(d); err != nil {
		db.Close()
		os.Remove(d.path)
		return Database{}, err
	}
	s.log.Info("database added", "name", name, "uuid", d.UUID, "from", path)
	return d.Database, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// AddSyntheticDatabase adds a database without SQLite whose dump is a
// deterministic, generated D1 dump of exactly size bytes (one table of
// mixed rows; valid SQL from MinSyntheticSize bytes up). Exec and DBPath
// fail on it.
func (s *Server) AddSyntheticDatabase(name string, size int64) (Database, error) {
	if size < 0 {
		return Database{}, fmt.Errorf("d1emu: synthetic %s: negative size", name)
	}
	d, err := s.newDatabase(name)
	if err != nil {
		return Database{}, err
	}
	d.path, d.synthSize = "", size
	if err := s.register(d); err != nil {
		return Database{}, err
	}
	s.log.Info("synthetic database added", "name", name, "uuid", d.UUID, "bytes", size)
	return d.Database, nil
}

// Databases lists the databases in creation order.
func (s *Server) Databases() []Database {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Database, len(s.dbs))
	for i, d := range s.dbs {
		out[i] = d.Database
	}
	return out
}

// lookup finds a database by UUID, or by name when byName is set.
func (s *Server) lookup(id string, byName bool) *database {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.dbs {
		if d.UUID == id || (byName && d.Name == id) {
			return d
		}
	}
	return nil
}

func (s *Server) mustLookup(id string) (*database, error) {
	d := s.lookup(id, true)
	if d == nil {
		return nil, fmt.Errorf("d1emu: no database %q", id)
	}
	return d, nil
}

// Exec runs sql (any number of statements) in a database, given by UUID or
// name, and advances its bookmark.
func (s *Server) Exec(id, sql string) error {
	d, err := s.mustLookup(id)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.path == "" {
		return fmt.Errorf("d1emu: exec %s: %w", id, errNotSQLite)
	}
	if d.db == nil {
		return errors.New("d1emu: server closed")
	}
	_, err = d.db.Exec(sql)
	d.version++
	d.contentHash = nil
	if err != nil {
		return fmt.Errorf("d1emu: exec %s: %w", id, err)
	}
	return nil
}

// DBPath is the SQLite file of a database, given by UUID or name.
func (s *Server) DBPath(id string) (string, error) {
	d, err := s.mustLookup(id)
	if err != nil {
		return "", err
	}
	if d.path == "" {
		return "", fmt.Errorf("d1emu: %s: %w", id, errNotSQLite)
	}
	return d.path, nil
}

// WriteDump writes the dump the next export of a database (UUID or name)
// would produce, byte for byte. A database with a virtual table gives an
// error, as its export would.
func (s *Server) WriteDump(ctx context.Context, id string, w io.Writer) (int64, error) {
	d, err := s.mustLookup(id)
	if err != nil {
		return 0, err
	}
	if d.path == "" {
		return writeSynthetic(ctx, w, d.Name, d.synthSize)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return 0, errors.New("d1emu: server closed")
	}
	n, _, err := dumpSQLite(ctx, d.db, w, dumpOptions{})
	if err != nil {
		return n, fmt.Errorf("d1emu: dump %s: %w", id, err)
	}
	return n, nil
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
