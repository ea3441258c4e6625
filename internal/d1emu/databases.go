package d1emu

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // driver "sqlite"

	"github.com/d1backup/d1backup/internal/sqlitedb"
)

// Database describes an emulated database.
type Database struct {
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Jurisdiction is "eu", "fedramp" or "" (none: null on the wire).
	Jurisdiction string `json:"jurisdiction,omitempty"`
	// PrimaryLocationHint is one of LocationHints or "". D1 ignores it
	// when a jurisdiction is set, and so does the emulator.
	PrimaryLocationHint string `json:"primary_location_hint,omitempty"`
}

// Jurisdictions and LocationHints are the values D1 accepts at create.
var (
	Jurisdictions = []string{"eu", "fedramp"}
	LocationHints = []string{"wnam", "enam", "weur", "eeur", "apac", "oc"}
)

// DatabaseOption sets a property of a database being created.
type DatabaseOption func(*Database)

// WithJurisdiction creates the database in a jurisdiction ("eu", "fedramp").
func WithJurisdiction(j string) DatabaseOption { return func(d *Database) { d.Jurisdiction = j } }

// WithLocationHint sets the database's primary location hint.
func WithLocationHint(h string) DatabaseOption {
	return func(d *Database) { d.PrimaryLocationHint = h }
}

// validPlacement checks a jurisdiction and a location hint as D1's create does.
func validPlacement(jurisdiction, hint string) error {
	if jurisdiction != "" && !slices.Contains(Jurisdictions, jurisdiction) {
		return fmt.Errorf("jurisdiction must be one of %s, got %q", strings.Join(Jurisdictions, ", "), jurisdiction)
	}
	if hint != "" && !slices.Contains(LocationHints, hint) {
		return fmt.Errorf("primary_location_hint must be one of %s, got %q", strings.Join(LocationHints, ", "), hint)
	}
	return nil
}

// region is the served_by_region of query answers: the jurisdiction's, or
// the hint's, or ENAM.
func (d Database) region() string {
	switch {
	case d.Jurisdiction == "eu":
		return "WEUR"
	case d.Jurisdiction == "fedramp":
		return "ENAM"
	case d.PrimaryLocationHint != "":
		return strings.ToUpper(d.PrimaryLocationHint)
	}
	return "ENAM"
}

type database struct {
	Database
	path      string // SQLite file; "" for synthetic
	synthSize int64

	mu          sync.Mutex
	db          *sql.DB
	lite        *liteConn // the query API's connection; nil until used
	version     uint64    // write counter: leading field of the bookmark
	contentHash []byte    // content hash seen at version; nil when unknown
	dataVersion int64     // PRAGMA data_version when contentHash was taken
	history     []versionAt
	export      *export
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

func (s *Server) newDatabase(name string, opts []DatabaseOption) (*database, error) {
	if name == "" {
		return nil, errors.New("d1emu: database name is empty")
	}
	meta := Database{Name: name}
	for _, o := range opts {
		o(&meta)
	}
	if err := validPlacement(meta.Jurisdiction, meta.PrimaryLocationHint); err != nil {
		return nil, fmt.Errorf("d1emu: database %s: %w", name, err)
	}
	if s.lookup(name, true) != nil {
		return nil, fmt.Errorf("d1emu: a database named %q already exists", name)
	}
	meta.UUID = newUUID()
	meta.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	return &database{
		Database: meta,
		path:     filepath.Join(s.dir, meta.UUID+".sqlite"),
		version:  1,
		history:  []versionAt{{at: meta.CreatedAt, version: 1}},
	}, nil
}

func openSQLite(path string) (*sql.DB, error) { return sqlitedb.Open(path, "foreign_keys(1)") }

// serve opens d's SQLite file (after setup, when given) and registers d;
// on failure the file is removed.
func (s *Server) serve(d *database, setup func(*sql.DB) error) error {
	db, err := openSQLite(d.path)
	if err == nil && setup != nil {
		if err = setup(db); err != nil {
			db.Close()
		}
	}
	if err != nil {
		os.Remove(d.path)
		return err
	}
	d.db = db
	if err := s.register(d); err != nil {
		db.Close()
		os.Remove(d.path)
		return err
	}
	return nil
}

// CreateDatabase creates a database from a new SQLite file and runs seedSQL
// (any number of statements) in it.
func (s *Server) CreateDatabase(name, seedSQL string, opts ...DatabaseOption) (Database, error) {
	d, err := s.newDatabase(name, opts)
	if err != nil {
		return Database{}, err
	}
	err = s.serve(d, func(db *sql.DB) error {
		if seedSQL == "" {
			return nil
		}
		if _, err := db.Exec(seedSQL); err != nil {
			return fmt.Errorf("d1emu: create %s: seed: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return Database{}, err
	}
	s.log.Info("database created", "name", name, "uuid", d.UUID, "jurisdiction", d.Jurisdiction)
	return d.Database, nil
}

// AddDatabaseFile serves a copy of the SQLite file at path (its main file
// only: checkpoint any WAL first).
func (s *Server) AddDatabaseFile(name, path string, opts ...DatabaseOption) (Database, error) {
	d, err := s.newDatabase(name, opts)
	if err != nil {
		return Database{}, err
	}
	if err := copyFile(path, d.path); err != nil {
		return Database{}, fmt.Errorf("d1emu: add %s: %w", name, err)
	}
	err = s.serve(d, func(db *sql.DB) error {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema`).Scan(&n); err != nil {
			return fmt.Errorf("d1emu: add %s: %s is not a SQLite database: %w", name, path, err)
		}
		return nil
	})
	if err != nil {
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
// mixed rows; valid SQL from MinSyntheticSize bytes up). Exec, DBPath and
// the query API fail on it.
func (s *Server) AddSyntheticDatabase(name string, size int64, opts ...DatabaseOption) (Database, error) {
	if size < 0 {
		return Database{}, fmt.Errorf("d1emu: synthetic %s: negative size", name)
	}
	d, err := s.newDatabase(name, opts)
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
	return s.exec(d, sql)
}

// exec runs sql in d and advances its bookmark. Call with d.mu held.
func (s *Server) exec(d *database, sql string) error {
	if d.path == "" {
		return fmt.Errorf("d1emu: exec %s: %w", d.Name, errNotSQLite)
	}
	if d.db == nil {
		return errors.New("d1emu: server closed")
	}
	_, err := d.db.Exec(sql)
	s.advance(d)
	if err != nil {
		return fmt.Errorf("d1emu: exec %s: %w", d.Name, err)
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
