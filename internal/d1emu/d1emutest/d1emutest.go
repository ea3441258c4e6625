// Package d1emutest starts the D1 emulator for tests.
package d1emutest

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// Start runs an emulator behind a local HTTP server until the test ends.
// BaseURL is what CLOUDFLARE_API_BASE_URL takes.
func Start(tb testing.TB, opts d1emu.Options) *Emulator {
	tb.Helper()
	emu, err := d1emu.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	tb.Cleanup(func() { srv.Close(); emu.Close() })
	return &Emulator{Server: emu, HTTP: srv, BaseURL: srv.URL + "/client/v4"}
}

// Emulator is a running emulator.
type Emulator struct {
	*d1emu.Server
	HTTP    *httptest.Server
	BaseURL string
}

// MustCreate creates a database from seed SQL or fails the test; opts set
// e.g. its jurisdiction (d1emu.WithJurisdiction).
func (e *Emulator) MustCreate(tb testing.TB, name, seed string, opts ...d1emu.DatabaseOption) d1emu.Database {
	tb.Helper()
	db, err := e.CreateDatabase(name, seed, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// MustCreateFTS5 creates a database holding FTS5 tables of the kinds given
// (every kind when none) over an ordinary table: see d1emu.FTS5SQL for the
// tables and rows. Its export ends in status error, as D1's would.
func (e *Emulator) MustCreateFTS5(tb testing.TB, name string, kinds ...d1emu.FTS5Kind) d1emu.Database {
	tb.Helper()
	return e.MustCreate(tb, name, d1emu.FTS5SQL(kinds...))
}

// MustExec runs SQL in a database (UUID or name), advancing its bookmark,
// or fails the test.
func (e *Emulator) MustExec(tb testing.TB, id, sql string) {
	tb.Helper()
	if err := e.Exec(id, sql); err != nil {
		tb.Fatal(err)
	}
}

// MustDump returns the dump the next export of database id would produce.
func (e *Emulator) MustDump(tb testing.TB, id string) []byte {
	tb.Helper()
	var b bytes.Buffer
	if _, err := e.WriteDump(context.Background(), id, &b); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}
