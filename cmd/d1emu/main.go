// Command d1emu serves the D1 emulator (internal/d1emu) over HTTP for demos,
// scripts and manual runs of d1backup.
//
//	go run ./cmd/d1emu [flags]
//
// Scripts start it in the background with stdout to a file, wait for the
// "# ready" line and source the "export ..." lines above it.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/d1backup/d1backup/internal/d1emu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// pairs collects repeated name=value flags.
type pairs [][2]string

func (p *pairs) String() string { return "" }

func (p *pairs) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" || value == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	*p = append(*p, [2]string{name, value})
	return nil
}

const usage = `Usage: d1emu [flags]

Serves the Cloudflare D1 REST API (list, get, export with polling, signed
dump downloads) backed by local SQLite files. Prints shell lines to stdout
(export CLOUDFLARE_API_BASE_URL=..., one "# database" line per database, then
"# ready"), logs to stderr, stops on SIGINT/SIGTERM.

Control endpoints (no auth): POST /__emu/faults {"endpoint":"poll","kind":"reset"},
GET /__emu/requests, GET /__emu/databases, GET /__emu/databases/{id}/dump,
POST /__emu/databases/{id}/exec (SQL body).

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("d1emu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8787", "listen address (port 0 picks a free one)")
	dir := fs.String("dir", "", "directory for SQLite and dump files (default: a temporary one, removed on exit)")
	token := fs.String("token", d1emu.DefaultToken, "accepted API token")
	account := fs.String("account", d1emu.DefaultAccountID, "account ID")
	polls := fs.Int("export-polls", d1emu.DefaultExportPolls, "polls an export stays active (0: complete at once)")
	idle := fs.Duration("idle-timeout", d1emu.DefaultIdleTimeout, "an export not polled for this long cancels itself")
	ttl := fs.Duration("url-ttl", d1emu.DefaultURLTTL, "signed dump URL lifetime")
	noSample := fs.Bool("no-sample", false, "do not create the sample database")
	var files, synths pairs
	fs.Var(&files, "db", "serve a copy of a SQLite file: name=path.sqlite (repeatable)")
	fs.Var(&synths, "synthetic", "add a generated dump of an exact size: name=SIZE, e.g. big=1GiB (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "d1emu: unexpected arguments: %v\n", fs.Args())
		return 2
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	fail := func(err error) int {
		fmt.Fprintln(stderr, err)
		return 1
	}
	s, err := d1emu.New(d1emu.Options{
		AccountID: *account, Token: *token, Dir: *dir, ExportPolls: *polls,
		IdleTimeout: *idle, URLTTL: *ttl, Logger: log,
	})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	if !*noSample {
		if _, err := s.CreateDatabase("sample", d1emu.SampleSQL); err != nil {
			return fail(err)
		}
	}
	for _, f := range files {
		if _, err := s.AddDatabaseFile(f[0], f[1]); err != nil {
			return fail(err)
		}
	}
	for _, f := range synths {
		size, err := d1emu.ParseSize(f[1])
		if err != nil {
			return fail(err)
		}
		if _, err := s.AddSyntheticDatabase(f[0], size); err != nil {
			return fail(err)
		}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fail(fmt.Errorf("d1emu: %w", err))
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	fmt.Fprintf(stdout, "export CLOUDFLARE_API_BASE_URL=http://%s/client/v4\n", ln.Addr())
	fmt.Fprintf(stdout, "export CLOUDFLARE_ACCOUNT_ID=%s\n", s.AccountID())
	fmt.Fprintf(stdout, "export CLOUDFLARE_API_TOKEN=%s\n", s.Token())
	for _, db := range s.Databases() {
		h := sha256.New()
		n, err := s.WriteDump(ctx, db.UUID, h)
		if err != nil {
			fmt.Fprintf(stdout, "# database %s %s dump unavailable: %v\n", db.Name, db.UUID, err)
			continue
		}
		fmt.Fprintf(stdout, "# database %s %s dump sha256 %x (%d bytes)\n", db.Name, db.UUID, h.Sum(nil), n)
	}
	fmt.Fprintln(stdout, "# ready")

	select {
	case err := <-served:
		return fail(fmt.Errorf("d1emu: serve: %w", err))
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fail(fmt.Errorf("d1emu: shutdown: %w", err))
	}
	return 0
}
