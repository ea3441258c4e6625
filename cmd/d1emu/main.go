// Command d1emu serves the D1 emulator (internal/d1emu) over HTTP for demos,
// scripts and manual runs of d1backup.
//
//	go run ./cmd/d1emu [flags]
//
// It prints shell lines to stdout (export lines, one "# database" line per
// database, "# ready"), then closes stdout and keeps serving until SIGINT
// or SIGTERM. Scripts either read those lines from a file, or use the
// one-liner:
//
//	eval "$(d1emu --print-env 2>/tmp/d1emu.log &)"   # exports CLOUDFLARE_* and D1EMU_PID
//	kill "$D1EMU_PID"                                # when done
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// DefaultAddr is the listen address: 8791 is no common tool's default
// (wrangler dev takes 8787, wrangler pages dev 8788).
const DefaultAddr = "127.0.0.1:8791"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is what the flags say.
type config struct {
	opts      d1emu.Options
	addr      string
	noSample  bool
	ftsSample bool
	printEnv  bool
	envFile   string
	dbs       specs // --db name=path.sqlite
	seeds     specs // --seed name=file.sql
	synths    specs // --synthetic name=SIZE
}

func parseFlags(args []string, stdout, stderr io.Writer) (*config, int) {
	c := &config{}
	fs := flag.NewFlagSet("d1emu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", DefaultAddr, "listen address (port 0 picks a free one)")
	fs.StringVar(&c.opts.Dir, "dir", "", "directory for SQLite and dump files (default: a temporary one, removed on exit)")
	fs.StringVar(&c.opts.Token, "token", d1emu.DefaultToken, "accepted API token")
	fs.StringVar(&c.opts.AccountID, "account", d1emu.DefaultAccountID, "account ID")
	fs.IntVar(&c.opts.ExportPolls, "export-polls", d1emu.DefaultExportPolls, "polls an export stays active (0: complete at once)")
	fs.IntVar(&c.opts.ImportPolls, "import-polls", 0, "polls an import stays active before its outcome")
	fs.DurationVar(&c.opts.IdleTimeout, "idle-timeout", d1emu.DefaultIdleTimeout, "an export not polled for this long cancels itself")
	fs.DurationVar(&c.opts.URLTTL, "url-ttl", d1emu.DefaultURLTTL, "signed URL lifetime")
	fs.IntVar(&c.opts.MaxResponseBytes, "max-response-bytes", d1emu.DefaultMaxResponseBytes, "largest query/raw answer")
	fs.DurationVar(&c.opts.MaxQueryDuration, "max-query-duration", d1emu.DefaultMaxQueryDuration, "longest query/raw request")
	fs.Var(rateFlag{&c.opts.RateLimit}, "rate-limit", `Cloudflare's rate limit: REQUESTS/WINDOW, e.g. 1200/5m (Cloudflare's) or 20/2s; off by default`)
	fs.DurationVar(&c.opts.RateLimit.Block, "rate-limit-block", 0, "how long a tripped rate limit blocks every call (default: the window)")
	fs.BoolVar(&c.noSample, "no-sample", false, `do not create the "sample" database`)
	fs.BoolVar(&c.ftsSample, "fts5-sample", false, `also create "sample-fts5", holding FTS5 tables of every kind (its export fails, as on D1)`)
	fs.BoolVar(&c.printEnv, "print-env", false, `print only the export lines (and # ready), for eval "$(d1emu --print-env &)"`)
	fs.StringVar(&c.envFile, "env-file", "", "also write KEY=value lines to this file (for set -a; . FILE), before # ready")
	fs.Var(&c.dbs, "db", "serve a copy of a SQLite file: name=path.sqlite[,jurisdiction=eu|fedramp][,location=HINT] (repeatable)")
	fs.Var(&c.seeds, "seed", "create a database from a SQL file: name=file.sql[,jurisdiction=...][,location=...] (repeatable)")
	fs.Var(&c.synths, "synthetic", "add a generated dump of an exact size: name=SIZE[,jurisdiction=...], e.g. big=1GiB (repeatable)")
	fs.Usage = func() { writeUsage(fs.Output(), fs) }
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, 0
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "d1emu: unexpected arguments: %v\n", fs.Args())
		return nil, 2
	}
	return c, -1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, code := parseFlags(args, stdout, stderr)
	if c == nil {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	fail := func(err error) int {
		fmt.Fprintln(stderr, err)
		return 1
	}
	c.opts.Logger = log
	s, err := d1emu.New(c.opts)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	if err := addDatabases(s, c); err != nil {
		return fail(err)
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fail(fmt.Errorf("d1emu: %w", err))
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	vars := envVars(s, ln.Addr().String())
	if c.envFile != "" {
		if err := writeEnvFile(c.envFile, vars); err != nil {
			return fail(err)
		}
	}
	if err := announce(ctx, stdout, s, vars, !c.printEnv); err != nil {
		return fail(err)
	}

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

func addDatabases(s *d1emu.Server, c *config) error {
	if !c.noSample {
		if _, err := s.CreateDatabase("sample", d1emu.SampleSQL); err != nil {
			return err
		}
	}
	if c.ftsSample {
		if _, err := s.CreateDatabase("sample-fts5", d1emu.FTS5SQL()); err != nil {
			return err
		}
	}
	for _, d := range c.dbs {
		if _, err := s.AddDatabaseFile(d.name, d.value, d.opts...); err != nil {
			return err
		}
	}
	for _, d := range c.seeds {
		sql, err := os.ReadFile(d.value)
		if err != nil {
			return fmt.Errorf("d1emu: seed %s: %w", d.name, err)
		}
		if _, err := s.CreateDatabase(d.name, string(sql), d.opts...); err != nil {
			return err
		}
	}
	for _, d := range c.synths {
		size, err := d1emu.ParseSize(d.value)
		if err != nil {
			return err
		}
		if _, err := s.AddSyntheticDatabase(d.name, size, d.opts...); err != nil {
			return err
		}
	}
	return nil
}

// spec is a name=value flag with placement options after commas.
type spec struct {
	name, value string
	opts        []d1emu.DatabaseOption
}

// specs collects repeated spec flags.
type specs []spec

func (p *specs) String() string { return "" }

func (p *specs) Set(v string) error {
	parts := strings.Split(v, ",")
	var opts []d1emu.DatabaseOption
	// Options come last; a path may hold commas of its own.
	for len(parts) > 1 {
		key, val, _ := strings.Cut(parts[len(parts)-1], "=")
		if key == "jurisdiction" {
			opts = append(opts, d1emu.WithJurisdiction(val))
		} else if key == "location" {
			opts = append(opts, d1emu.WithLocationHint(val))
		} else {
			break
		}
		parts = parts[:len(parts)-1]
	}
	name, value, ok := strings.Cut(strings.Join(parts, ","), "=")
	if !ok || name == "" || value == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	*p = append(*p, spec{name: name, value: value, opts: opts})
	return nil
}

// rateFlag parses REQUESTS/WINDOW into a RateLimit.
type rateFlag struct{ l *d1emu.RateLimit }

func (f rateFlag) String() string {
	if f.l == nil || f.l.Requests == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%s", f.l.Requests, f.l.Window)
}

func (f rateFlag) Set(v string) error {
	n, w, ok := strings.Cut(v, "/")
	requests, err1 := strconv.Atoi(n)
	window, err2 := time.ParseDuration(w)
	if !ok || err1 != nil || err2 != nil || requests <= 0 || window <= 0 {
		return fmt.Errorf("want REQUESTS/WINDOW, e.g. 1200/5m, got %q", v)
	}
	f.l.Requests, f.l.Window = requests, window
	return nil
}
