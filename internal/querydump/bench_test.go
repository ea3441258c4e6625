package querydump_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/querydump"
)

// benchSeed is 100,000 rows of mixed values, about 13 MB of dump.
const benchSeed = `CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, at REAL, payload TEXT, blob BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO events (kind, at, payload, blob)
SELECT 'kind-' || (i % 17), i * 1.5, printf('event %d: it''s a line of text with some words in it, ★', i),
  CASE WHEN i % 10 = 0 THEN randomblob(16) END FROM n;`

// BenchmarkQueryDump reads the same database through the export (start,
// poll, download: the baseline) and through the query API, in the same run,
// and reports the query read's time as a multiple of the export's.
func BenchmarkQueryDump(b *testing.B) {
	emu := d1emutest.Start(b, d1emu.Options{})
	db := emu.MustCreate(b, "bench", benchSeed)
	api := client(b, emu)
	ctx := context.Background()
	var exportTime, queryTime time.Duration
	var sqlBytes int64
	for b.Loop() {
		t0 := time.Now()
		st, err := api.StartExport(ctx, db.UUID)
		for err == nil && st.Status == "active" {
			st, err = api.PollExport(ctx, db.UUID, st.Bookmark)
		}
		if err != nil {
			b.Fatal(err)
		}
		dl, err := api.Download(ctx, st.SignedURL, 0)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, dl.Body)
		dl.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		qs, err := querydump.Write(ctx, api, db.UUID, io.Discard, querydump.DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		exportTime += t1.Sub(t0)
		queryTime += time.Since(t1)
		sqlBytes = qs.Bytes
		b.ReportMetric(float64(n), "export-bytes")
		b.ReportMetric(float64(qs.Requests), "query-requests")
	}
	b.ReportMetric(float64(sqlBytes)/queryTime.Seconds()*float64(b.N)/1e6, "query-MB/s")
	b.ReportMetric(queryTime.Seconds()/exportTime.Seconds(), "query/export")
}
