package backup_test

import (
	"context"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/store/r2"
	"github.com/d1backup/d1backup/internal/testenv"
)

// BenchmarkStore streams a synthetic dump from the emulator into versitygw
// through the store step: the hot path of every backup. Size comes from
// D1BACKUP_BENCH_SIZE (bytes, default 1 GiB). It reports throughput (MB/s of
// SQL) and the process's peak RSS during the run, which includes the
// emulator serving the dump; versitygw runs in its own process.
//
//	go test -run '^$' -bench Store -benchtime 1x ./internal/backup
//
// scripts/bench is the full measurement: each run in its own process (a
// clean peak RSS), against curl | aws s3 cp and curl | rclone rcat.
func BenchmarkStore(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("D1BACKUP_BENCH_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("D1BACKUP_BENCH_SIZE=%q: %v", v, err)
		}
		size = n
	}
	s := testenv.RequireS3(b)
	emu, err := d1emu.New(d1emu.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	defer func() { srv.Close(); emu.Close() }()
	db, err := emu.AddSyntheticDatabase("bench", size)
	if err != nil {
		b.Fatal(err)
	}
	dcfg := d1.NewConfig(emu.AccountID(), emu.Token(), srv.URL+"/client/v4")
	dcfg.HTTPClient = srv.Client()
	api, err := d1.New(dcfg)
	if err != nil {
		b.Fatal(err)
	}
	const partSize, concurrency = 16 << 20, 4
	for _, compression := range []string{"none", "gzip", "zstd"} {
		b.Run(compression, func(b *testing.B) {
			b.SetBytes(size)
			var peak int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				bucket := s.NewBucket(b)
				st, err := r2.New(r2.Config{
					Endpoint: s.Endpoint, Region: s.Region, Bucket: bucket,
					AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
					PartSize: partSize, Concurrency: concurrency, HTTPClient: s.HTTPClient,
				})
				if err != nil {
					b.Fatal(err)
				}
				cfg := testConfig(compression)
				cfg.PollInterval = time.Millisecond
				r, err := backup.NewRunner(api, st, cfg)
				if err != nil {
					b.Fatal(err)
				}
				exp, err := r.Start(context.Background(), backup.Export{DatabaseID: db.UUID, DatabaseName: db.Name})
				if err != nil || exp.Status != backup.StatusComplete {
					b.Fatalf("start: %v (status %q)", err, exp.Status)
				}
				testenv.ResetPeakRSS()
				b.StartTimer()
				res, err := r.Store(context.Background(), exp)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if res.Summary == nil || res.Summary.SQLBytes != size {
					b.Fatalf("stored %+v, want %d SQL bytes", res.Summary, size)
				}
				peak = max(peak, testenv.PeakRSS())
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
			b.ReportMetric(float64(partSize*concurrency)/(1<<20), "buffer-bound-MiB")
		})
	}
}
