package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
)

func cmdBackup(ctx context.Context, args []string, e env) error {
	fs := newFlags(e, "backup", "backup --database <uuid|name> [flags]")
	database := fs.String("database", "", "database to back up: its UUID or its name (required)")
	dest := fs.String("dest", "", "destination: a folder, or r2://<bucket>/<prefix> (default: R2_BUCKET if set, else ./d1-backups)")
	compression := fs.String("compression", "", "gzip, zstd or none (default D1BACKUP_COMPRESSION or gzip)")
	poll := fs.Duration("poll-interval", 0, "wait between export polls (default D1BACKUP_POLL_INTERVAL or 5s)")
	timeout := fs.Duration("export-timeout", 0, "give up on an export still running after this long (default 1h)")
	recipients := fs.String("age-recipient", "", "encrypt to these age public keys (comma-separated age1...; default D1BACKUP_AGE_RECIPIENTS)")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	verbose := fs.Bool("verbose", false, "log every step")
	if err := parse(fs, args, e); err != nil {
		return err
	}
	if *database == "" {
		return usageError{"--database is required (a database UUID or name)"}
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	if *compression != "" {
		cfg.Compression = *compression
	}
	if *poll > 0 {
		cfg.PollInterval = *poll
	}
	if *timeout > 0 {
		cfg.ExportTimeout = *timeout
	}
	if *recipients != "" {
		cfg.Recipients = strings.Split(*recipients, ",")
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	hc := cfg.HTTPClient()
	api, err := cfg.D1Client(hc)
	if err != nil {
		return err
	}
	cfg.BoundMemory(e.getenv)
	st, err := cfg.OpenDest(*dest, hc)
	if err != nil {
		return err
	}
	log := newLogger(e, *verbose)
	prog := newProgress(e, log)
	runner, err := backup.NewRunner(api, st, backup.Config{
		Compression:   cfg.Compression,
		Recipients:    cfg.Recipients,
		PollInterval:  cfg.PollInterval,
		ExportTimeout: cfg.ExportTimeout,
		MaxRestarts:   cfg.MaxRestarts,
		ToolVersion:   version(),
		Logger:        log,
		Progress:      prog.update,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "d1backup: exporting %s to %s; D1 answers no queries to the database while the export runs\n", *database, st)
	sum, err := runner.Run(ctx, target(*database))
	prog.done()
	if err != nil {
		return backup.Classified(err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	verb := "stored"
	if sum.AlreadyExisted {
		verb = "already stored"
	}
	fmt.Fprintf(e.stdout, "%s %s (%s) at bookmark %s: %s\n  SQL %s, sha256 %s\n  stored %s (%s), sha256 %s\n",
		verb, sum.DatabaseName, sum.DatabaseID, sum.Bookmark, joinKey(st.String(), sum.Key),
		bytesHuman(sum.SQLBytes), sum.SQLSHA256, bytesHuman(sum.StoredBytes), sum.Compression, sum.StoredSHA256)
	return nil
}

func target(ref string) backup.Target {
	if isUUID(ref) {
		return backup.Target{DatabaseID: ref}
	}
	return backup.Target{DatabaseName: ref}
}

func joinKey(root, key string) string {
	if root == "" || root[len(root)-1] == '/' {
		return root + key
	}
	return root + "/" + key
}

func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// progress shows bytes and rate of the dump: a line redrawn every 200 ms on
// a terminal, a log line every 10 s elsewhere.
type progress struct {
	mu    sync.Mutex
	e     env
	log   *slog.Logger
	start time.Time
	last  time.Time
	drawn bool
}

func newProgress(e env, log *slog.Logger) *progress {
	return &progress{e: e, log: log}
}

func (p *progress) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.start.IsZero() {
		p.start, p.last = now, now
	}
	every := 10 * time.Second
	if p.e.terminal {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every && done != total {
		return
	}
	p.last = now
	rate := int64(float64(done) / max(now.Sub(p.start).Seconds(), 0.001))
	if !p.e.terminal {
		p.log.Info("downloading dump", "bytes", done, "total", total, "bytes_per_second", rate)
		return
	}
	of := ""
	if total >= 0 {
		of = " / " + bytesHuman(total)
	}
	fmt.Fprintf(p.e.stderr, "\r\033[K  %s%s  %s/s", bytesHuman(done), of, bytesHuman(rate))
	p.drawn = true
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.e.stderr)
	}
}
