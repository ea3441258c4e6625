// Command d1bench runs the store step once, the way the store-dump Lambda
// does (same configuration from the environment, same HTTP client), on an
// export that is already complete, and prints one JSON line: bytes, seconds,
// MB/s and the process's peak RSS. scripts/bench runs it once per
// measurement, so each peak RSS belongs to one run alone.
//
//	d1bench --url <signed dump URL> --database-id <uuid> --bookmark <b> [--prefix run-1]
//	d1bench proxy ...   (the HTTPS proxy scripts/bench measures through; see proxy.go)
//
// Settings come from the variables the Lambda reads: CLOUDFLARE_ACCOUNT_ID,
// CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_BASE_URL, R2_ENDPOINT, R2_BUCKET,
// R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, D1BACKUP_COMPRESSION,
// D1BACKUP_PART_SIZE, D1BACKUP_CONCURRENCY.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"

	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/testenv"
)

// result is the JSON line d1bench prints.
type result struct {
	Compression string  `json:"compression"`
	PartSize    int64   `json:"part_size"`
	Concurrency int     `json:"concurrency"`
	SQLBytes    int64   `json:"sql_bytes"`
	StoredBytes int64   `json:"stored_bytes"`
	SQLSHA256   string  `json:"sql_sha256"`
	Seconds     float64 `json:"seconds"`
	MBPerSecond float64 `json:"mb_per_s"` // SQL bytes / 1e6 / seconds
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	Key         string  `json:"key"`
	Invocations int     `json:"invocations"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		proxyMain(ctx, os.Args[2:])
		return
	}
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "d1bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("d1bench", flag.ContinueOnError)
	url := fs.String("url", "", "signed URL of a complete export (required)")
	id := fs.String("database-id", "", "database UUID (required)")
	name := fs.String("database-name", "bench", "database name")
	bookmark := fs.String("bookmark", "", "the export's bookmark (required)")
	prefix := fs.String("prefix", "", "key prefix inside R2_BUCKET (default D1BACKUP_PREFIX); a fresh one per run, or the run finds the previous backup")
	wantSize := fs.Int64("want-size", -1, "fail unless this many SQL bytes were stored")
	wantSHA := fs.String("want-sha256", "", "fail unless the stored SQL has this SHA-256")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the store step to this file")
	invocation := fs.Duration("invocation", 0, "run the store step as Lambda invocations of this length, each going on from the previous one's checkpoint (0: one run with no deadline)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *id == "" || *bookmark == "" {
		return fmt.Errorf("--url, --database-id and --bookmark are required")
	}
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		return err
	}
	hc := cfg.HTTPClient()
	cfg.BoundMemory(os.Getenv)
	api, err := cfg.D1Client(hc)
	if err != nil {
		return err
	}
	if *prefix == "" {
		*prefix = cfg.Prefix
	}
	cfg.Prefix = *prefix
	st, err := cfg.OpenDest("", hc)
	if err != nil {
		return err
	}
	bc := cfg.Backup("bench")
	if os.Getenv("D1BENCH_DEBUG") != "" {
		bc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	runner, err := backup.NewRunner(api, st, bc)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	exp := backup.Export{
		DatabaseID: *id, DatabaseName: *name, Bookmark: *bookmark,
		Status: backup.StatusComplete, SignedURL: *url, StartedAt: now, CompletedAt: &now,
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	sum, invocations, err := runner.StoreAll(ctx, exp, *invocation)
	secs := time.Since(start).Seconds()
	if err != nil {
		return err
	}
	switch {
	case sum.AlreadyExisted:
		return fmt.Errorf("%s was already stored: use a fresh --prefix", sum.Key)
	case *wantSize >= 0 && sum.SQLBytes != *wantSize:
		return fmt.Errorf("stored %d SQL bytes, want %d", sum.SQLBytes, *wantSize)
	case *wantSHA != "" && sum.SQLSHA256 != *wantSHA:
		return fmt.Errorf("stored SQL has SHA-256 %s, want %s", sum.SQLSHA256, *wantSHA)
	}
	return json.NewEncoder(os.Stdout).Encode(result{
		Compression: cfg.Compression, PartSize: cfg.PartSize, Concurrency: cfg.PartConcurrency,
		SQLBytes: sum.SQLBytes, StoredBytes: sum.StoredBytes, SQLSHA256: sum.SQLSHA256,
		Seconds: secs, MBPerSecond: float64(sum.SQLBytes) / 1e6 / secs,
		PeakRSSMiB: float64(testenv.PeakRSS()) / (1 << 20), Key: sum.Key, Invocations: invocations,
	})
}
