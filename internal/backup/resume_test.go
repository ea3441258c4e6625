package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/clock"
	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/seal"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/r2"
	"github.com/d1backup/d1backup/internal/testenv"
)

// wire sits between the r2 store and versitygw: it records what R2 would
// judge (part sizes per upload, completed uploads), can slow part uploads,
// and can cut every request from a chosen moment, as a process that died.
type wire struct {
	base  http.RoundTripper
	delay time.Duration // before each part upload

	mu        sync.Mutex
	parts     map[string]map[int]int64 // upload ID → part number → bytes
	completed []string
	// crashWhen, if set, is asked about every request; once it says yes,
	// that request and every later one fail.
	crashWhen func(r *http.Request) bool
	crashed   atomic.Bool
}

func newWire(base http.RoundTripper) *wire {
	return &wire{base: base, parts: map[string]map[int]int64{}}
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	w.mu.Lock()
	crash := w.crashed.Load() || (w.crashWhen != nil && w.crashWhen(req))
	w.mu.Unlock()
	if crash {
		w.crashed.Store(true)
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	q := req.URL.Query()
	id := q.Get("uploadId")
	switch {
	case req.Method == http.MethodPut && q.Get("partNumber") != "":
		if w.delay > 0 {
			time.Sleep(w.delay)
		}
		n, _ := strconv.Atoi(q.Get("partNumber"))
		w.mu.Lock()
		if w.parts[id] == nil {
			w.parts[id] = map[int]int64{}
		}
		w.parts[id][n] = req.ContentLength
		w.mu.Unlock()
	case req.Method == http.MethodPost && id != "":
		w.mu.Lock()
		w.completed = append(w.completed, id)
		w.mu.Unlock()
	}
	return w.base.RoundTrip(req)
}

// checkEqualParts holds the last completed upload to R2's rule: parts
// 1..n, all partSize bytes but the last, which is not larger.
func (w *wire) checkEqualParts(t *testing.T, partSize int64) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.completed) == 0 {
		t.Fatal("no multipart upload was completed")
	}
	parts := w.parts[w.completed[len(w.completed)-1]]
	for n := 1; n <= len(parts); n++ {
		size, ok := parts[n]
		switch {
		case !ok:
			t.Fatalf("part %d of %d never uploaded", n, len(parts))
		case n < len(parts) && size != partSize:
			t.Errorf("part %d has %d bytes, want %d (R2 refuses unequal parts)", n, size, partSize)
		case n == len(parts) && (size > partSize || size <= 0):
			t.Errorf("last part %d has %d bytes", n, size)
		}
	}
	return len(parts)
}

// big is a synthetic database on the emulator, a bucket on versitygw and
// the pipeline between them.
type big struct {
	e      *env
	s      *testenv.S3
	db     d1emu.Database
	size   int64
	sha    string
	bucket string
	wire   *wire
	st     *r2.Store
}

const resumePart = r2.MinPartSize

// resumeSize is the dump size of the forced-deadline test: 256 MiB, or
// D1BACKUP_RESUME_SIZE bytes (the README's Tests section runs 1 GiB).
func resumeSize(t *testing.T) int64 {
	size := int64(256 << 20)
	if v := os.Getenv("D1BACKUP_RESUME_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("D1BACKUP_RESUME_SIZE=%q: want a byte count", v)
		}
		size = n
	}
	return size
}

func newBig(t *testing.T, size int64) *big {
	t.Helper()
	s := testenv.RequireS3(t)
	e := newEnv(t, d1emu.Options{})
	db, err := e.emu.AddSyntheticDatabase("big", size)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := e.emu.WriteDump(context.Background(), db.UUID, h); err != nil {
		t.Fatal(err)
	}
	b := &big{e: e, s: s, db: db, size: size, sha: hex.EncodeToString(h.Sum(nil)), bucket: s.NewBucket(t), wire: newWire(s.HTTPClient.Transport)}
	b.st = b.store(t)
	return b
}

func (b *big) store(t *testing.T) *r2.Store {
	t.Helper()
	st, err := r2.New(r2.Config{
		Endpoint: b.s.Endpoint, Region: b.s.Region, Bucket: b.bucket, Prefix: "backups",
		AccessKeyID: b.s.AccessKeyID, SecretAccessKey: b.s.SecretAccessKey,
		PartSize: resumePart, Concurrency: 3, HTTPClient: &http.Client{Transport: b.wire},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var testSealer = func() *seal.Sealer {
	s, err := seal.New("token-0123456789abcdef", "r2-secret")
	if err != nil {
		panic(err)
	}
	return s
}()

func resumeConfig(compression string, recipients ...string) backup.Config {
	cfg := testConfig(compression)
	cfg.PollInterval = time.Millisecond
	cfg.PartSize, cfg.PartConcurrency = resumePart, 3
	cfg.StopMargin = 300 * time.Millisecond
	cfg.Recipients = recipients
	cfg.Sealer = testSealer
	return cfg
}

func (b *big) runner(t *testing.T, st store.Store, cfg backup.Config) *backup.Runner {
	t.Helper()
	r, err := backup.NewRunner(b.e.api, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b *big) export(t *testing.T, r *backup.Runner) backup.Export {
	t.Helper()
	exp, err := r.Start(context.Background(), backup.Export{DatabaseID: b.db.UUID, DatabaseName: b.db.Name})
	if err != nil || exp.Status != backup.StatusComplete {
		t.Fatalf("start: %v (status %q)", err, exp.Status)
	}
	return exp
}

// checkStored reads the backup back as a user would (age, then the codec's
// standard reader) and compares the SQL with the emulator's dump; it checks
// the manifest, and that nothing else is left: no checkpoint, no upload.
func (b *big) checkStored(t *testing.T, sum backup.Summary, compression string, id *age.X25519Identity) {
	t.Helper()
	ctx := context.Background()
	rc, err := b.st.Get(ctx, sum.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	stored := sha256.New()
	var r io.Reader = io.TeeReader(rc, stored)
	if id != nil {
		if r, err = age.Decrypt(r, id); err != nil {
			t.Fatalf("age: %v", err)
		}
	}
	c, _ := codec.Lookup(compression)
	zr, err := c.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	sql := sha256.New()
	n, err := io.Copy(sql, zr)
	if err != nil {
		t.Fatalf("read the stored dump back: %v", err)
	}
	io.Copy(stored, rc)
	checks := []struct {
		name      string
		got, want any
	}{
		{"SQL SHA-256 read back", hex.EncodeToString(sql.Sum(nil)), b.sha},
		{"SQL bytes read back", n, b.size},
		{"summary SQL SHA-256", sum.SQLSHA256, b.sha},
		{"summary SQL bytes", sum.SQLBytes, b.size},
		{"summary stored SHA-256", sum.StoredSHA256, hex.EncodeToString(stored.Sum(nil))},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	m, err := backup.ReadManifest(ctx, b.st, sum.ManifestKey)
	if err != nil || m.SQLSHA256 != b.sha || m.StoredSHA256 != sum.StoredSHA256 {
		t.Errorf("manifest %+v, %v: want SQL %s, stored %s", m, err, b.sha, sum.StoredSHA256)
	}
	if got, want := strings.Join(keys(t, b.st), " "), sum.Key+" "+sum.ManifestKey; got != want {
		t.Errorf("objects = %s, want %s", got, want)
	}
	if n := openUploads(t, b.s, b.bucket); n != 0 {
		t.Errorf("%d multipart uploads left open", n)
	}
}

// TestStoreAcrossInvocations is the forced-deadline test: the store step
// runs as invocations of 1 s (500 ms for the suite's smaller dump), as the
// workflow loops StoreDump, each stopping before its deadline with a
// checkpoint, the next going on from it. The result is one object whose SQL is the dump's, byte for byte,
// with equal parts and nothing left open, for every compression and with
// encryption. D1BACKUP_RESUME_SIZE sets the dump size (1 GiB: see the
// README's Tests section).
func TestStoreAcrossInvocations(t *testing.T) {
	size := resumeSize(t)
	id, _ := age.GenerateX25519Identity()
	for _, tc := range []struct {
		name, compression string
		encrypt           bool
		periodic          time.Duration
	}{
		{"none", "none", false, 0},
		{"gzip", "gzip", false, 0},
		{"zstd", "zstd", false, 400 * time.Millisecond},
		{"gzip+age", "gzip", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBig(t, size)
			cfg := resumeConfig(tc.compression)
			if tc.encrypt {
				cfg.Recipients = []string{id.Recipient().String()}
			}
			cfg.CheckpointInterval = tc.periodic
			// Retries wait for real, as the workflow's do: versitygw goes on
			// completing an upload whose request the deadline cut.
			cfg.Sleep = clock.Sleep
			r := b.runner(t, b.st, cfg)
			// Invocations of 1 s for a 1 GiB dump (each streams for about
			// half of it: see minWork), shorter for the suite's smaller one,
			// so that each takes several whatever the machine's speed.
			invocation := 500 * time.Millisecond
			if size >= 1<<30 {
				invocation = time.Second
			}
			start := time.Now()
			sum, n, err := r.StoreAll(context.Background(), b.export(t, r), invocation)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d MiB in %d invocations, %.1f s", size>>20, n, time.Since(start).Seconds())
			// Retried invocations (versitygw still completing) count in n.
			if sum.Invocations < 3 || sum.Invocations > n {
				t.Errorf("took %d invocations (summary says %d); want several, to prove the resume", n, sum.Invocations)
			}
			var ident *age.X25519Identity
			if tc.encrypt {
				ident = id
			}
			b.checkStored(t, sum, tc.compression, ident)
			b.wire.checkEqualParts(t, resumePart)
		})
	}
}

// TestResumeAfterCrash: an invocation that dies after its checkpoint (parts
// uploaded that no checkpoint records, or its own checkpoint write cut) is
// redone by the next from the last checkpoint, overwriting those parts.
func TestResumeAfterCrash(t *testing.T) {
	size := int64(48 << 20)
	for _, tc := range []struct {
		name  string
		crash func(parts *atomic.Int32) func(r *http.Request) bool
	}{
		{"after some parts", func(parts *atomic.Int32) func(r *http.Request) bool {
			return func(r *http.Request) bool {
				return r.URL.Query().Get("partNumber") != "" && parts.Add(1) > 1
			}
		}},
		{"writing its checkpoint", func(*atomic.Int32) func(r *http.Request) bool {
			return func(r *http.Request) bool {
				return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, backup.CheckpointSuffix)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBig(t, size)
			b.wire.delay = slowPart
			cfg := slowConfig("none")
			r := b.runner(t, b.st, cfg)
			ctx := context.Background()
			first, err := withDeadline(r, b.export(t, r), 1500*time.Millisecond)
			if err != nil || first.Next == nil {
				t.Fatalf("first invocation: %+v, %v; want a checkpoint", first, err)
			}
			// The second invocation dies.
			var parts atomic.Int32
			b.wire.mu.Lock()
			b.wire.crashWhen = tc.crash(&parts)
			b.wire.mu.Unlock()
			if res, err := withDeadline(r, *first.Next, 1500*time.Millisecond); err == nil {
				t.Fatalf("the crashed invocation returned %+v", res)
			}
			// A new process, with the workflow's Export from before the crash.
			b.wire = newWire(b.s.HTTPClient.Transport)
			b.st = b.store(t)
			r = b.runner(t, b.st, cfg)
			sum, _, err := r.StoreAll(ctx, *first.Next, 0)
			if err != nil {
				t.Fatal(err)
			}
			b.checkStored(t, sum, "none", nil)
		})
	}
}

func withDeadline(r *backup.Runner, exp backup.Export, d time.Duration) (backup.StoreResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return r.Store(ctx, exp)
}

// sqliteBig is a real database whose dump is several parts, on a slowed
// wire so that a short invocation stops mid-dump.
func sqliteBig(t *testing.T) (*big, string) {
	t.Helper()
	b := newBig(t, 0)
	seed := "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);\n" +
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 24) INSERT INTO blobs SELECT i, randomblob(1048576) FROM n;"
	b.db = b.e.emu.MustCreate(t, "blobs", seed)
	b.wire.delay = slowPart
	return b, seed
}

// slowPart slows each part upload so that, one at a time (slowConfig), the
// 5 parts or more of these dumps take 2 s: an invocation of 1.5 s stops
// mid-dump, with time left for its part in flight and its checkpoint.
const slowPart = 400 * time.Millisecond

func slowConfig(compression string) backup.Config {
	cfg := resumeConfig(compression)
	cfg.PartConcurrency = 1
	cfg.StopMargin = 700 * time.Millisecond
	return cfg
}

func (b *big) dumpNow(t *testing.T) {
	t.Helper()
	dump := b.e.emu.MustDump(t, b.db.UUID)
	b.size, b.sha = int64(len(dump)), sha(dump)
}

// TestNewExportSameBookmarkContinues: the URL expires mid-store; the start
// step makes a new export (not counted as a restart, since the store got
// on), its bookmark is the same, so the upload goes on and says so.
func TestNewExportSameBookmarkContinues(t *testing.T) {
	b, _ := sqliteBig(t)
	b.dumpNow(t)
	cfg := slowConfig("none")
	cfg.MaxRestarts = 0
	r := b.runner(t, b.st, cfg)
	first, err := withDeadline(r, b.export(t, r), 1500*time.Millisecond)
	if err != nil || first.Next == nil {
		t.Fatalf("first invocation: %+v, %v; want a checkpoint", first, err)
	}
	b.wire.delay = 0
	b.e.emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointDownload, Kind: d1emu.FaultExpired})
	_, err = r.Store(context.Background(), *first.Next)
	if !d1.NeedsNewExport(err) {
		t.Fatalf("store with an expired URL: %v, want DownloadExpiredError", err)
	}
	again := *first.Next
	again.RestartCause = &backup.StepError{Error: "DownloadExpiredError", Cause: err.Error()}
	next, err := r.Start(context.Background(), again)
	if err != nil {
		t.Fatalf("start after the URL expired, with progress, max restarts 0: %v", err)
	}
	if next.StoreCheckpoint == nil || next.StoreCheckpoint.URLOffset != first.Next.StoreCheckpoint.SQLOffset || next.Bookmark != first.Next.Bookmark {
		t.Fatalf("start kept %+v (bookmark %s), want the checkpoint with URL offset %d, same bookmark", next.StoreCheckpoint, next.Bookmark, first.Next.StoreCheckpoint.SQLOffset)
	}
	sum, _, err := r.StoreAll(context.Background(), next, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(sum.Notes, func(s string) bool { return strings.Contains(s, "new export of the same bookmark") }) {
		t.Errorf("notes %q do not say the upload went on with a new URL", sum.Notes)
	}
	b.checkStored(t, sum, "none", nil)
	b.wire.checkEqualParts(t, resumePart)
}

// TestChangedBookmarkStartsOver: the database was written to before the new
// export, so its bookmark differs: the old upload is aborted and its
// checkpoint deleted, the new export stored from the start, and the
// output says so.
func TestChangedBookmarkStartsOver(t *testing.T) {
	b, _ := sqliteBig(t)
	cfg := slowConfig("zstd")
	r := b.runner(t, b.st, cfg)
	first, err := withDeadline(r, b.export(t, r), 1500*time.Millisecond)
	if err != nil || first.Next == nil {
		t.Fatalf("first invocation: %+v, %v; want a checkpoint", first, err)
	}
	oldKey := first.Next.StoreCheckpoint.Key
	b.wire.delay = 0
	if err := b.e.emu.Exec(b.db.UUID, "INSERT INTO blobs (data) VALUES (randomblob(1000))"); err != nil {
		t.Fatal(err)
	}
	b.dumpNow(t)
	again := *first.Next
	again.RestartCause = &backup.StepError{Error: "DownloadExpiredError", Cause: "expired"}
	next, err := r.Start(context.Background(), again)
	if err != nil {
		t.Fatal(err)
	}
	if next.Bookmark == first.Next.Bookmark {
		t.Fatal("the write did not change the bookmark: the test proves nothing")
	}
	if next.Restarts != first.Next.Restarts+1 {
		t.Errorf("restarts %d after a new bookmark, want %d: starting over counts", next.Restarts, first.Next.Restarts+1)
	}
	sum, _, err := r.StoreAll(context.Background(), next, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(sum.Notes, func(s string) bool {
		return strings.Contains(s, "database changed") && strings.Contains(s, "started over")
	}) {
		t.Errorf("notes %q do not say the store started over", sum.Notes)
	}
	if _, err := b.st.Stat(context.Background(), oldKey); err == nil {
		t.Errorf("old checkpoint %s still there", oldKey)
	}
	b.checkStored(t, sum, "zstd", nil)
}

// rangeLog records the Range header of every dump download.
type rangeLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	got  []string
}

func (l *rangeLog) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/__emu/dumps/") {
		l.mu.Lock()
		l.got = append(l.got, req.Header.Get("Range"))
		l.mu.Unlock()
	}
	return l.base.RoundTrip(req)
}

// TestRunResumesInterrupted: `d1backup backup` interrupted (Ctrl-C) and run
// again goes on with the same export's upload: with its URL while it is
// good (no new export, the download from the checkpoint's offset), else
// with a new export of the same bookmark.
func TestRunResumesInterrupted(t *testing.T) {
	for _, expired := range []bool{false, true} {
		t.Run(fmt.Sprintf("url expired %v", expired), func(t *testing.T) {
			b, _ := sqliteBig(t)
			b.wire.delay = 0
			b.dumpNow(t)
			log := &rangeLog{base: b.e.emu.HTTP.Client().Transport}
			dcfg := d1.NewConfig(b.e.emu.AccountID(), b.e.emu.Token(), b.e.emu.BaseURL)
			dcfg.HTTPClient, dcfg.MaxRetries = &http.Client{Transport: log}, 0
			api, err := d1.New(dcfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := resumeConfig("gzip")
			cfg.Progress = func(done, total int64) {
				if done > 14<<20 {
					cancel() // Ctrl-C
				}
			}
			r, err := backup.NewRunner(api, b.st, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Run(ctx, backup.Target{DatabaseName: "blobs"}); ctx.Err() == nil || err == nil {
				t.Fatalf("interrupted run: %v", err)
			}
			if expired {
				b.e.emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointDownload, Kind: d1emu.FaultExpired})
			}
			b.e.emu.ResetRequests()
			cfg.Progress = nil
			if r, err = backup.NewRunner(api, b.st, cfg); err != nil {
				t.Fatal(err)
			}
			sum, err := r.Run(context.Background(), backup.Target{DatabaseName: "blobs"})
			if err != nil {
				t.Fatal(err)
			}
			exports := 0
			for _, req := range b.e.emu.Requests() {
				if req.Endpoint == d1emu.EndpointExport {
					exports++
				}
			}
			if want := map[bool]int{false: 0, true: 1}[expired]; exports != want {
				t.Errorf("the rerun started %d exports, want %d", exports, want)
			}
			log.mu.Lock()
			last := log.got[len(log.got)-1]
			log.mu.Unlock()
			if !strings.HasPrefix(last, "bytes=") || last == "bytes=0-" {
				t.Errorf("the rerun downloaded with Range %q, want the rest of the dump from the checkpoint", last)
			}
			if !slices.ContainsFunc(sum.Notes, func(s string) bool { return strings.Contains(s, "continued an interrupted backup") }) {
				t.Errorf("notes %q do not say the backup was continued", sum.Notes)
			}
			b.checkStored(t, sum, "gzip", nil)
		})
	}
}

// noRange drops the Range header of dump downloads, as a server that
// ignores it would have it: the emulator then sends the whole dump.
type noRange struct{ base http.RoundTripper }

func (n noRange) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/__emu/dumps/") && req.Header.Get("Range") != "" {
		req = req.Clone(req.Context())
		req.Header.Del("Range")
	}
	return n.base.RoundTrip(req)
}

// TestResumeWhenRangeIgnored: a resumed download from a server that
// ignores Range gets the whole dump; the bytes already stored are read and
// dropped, and the backup is still the dump, byte for byte.
func TestResumeWhenRangeIgnored(t *testing.T) {
	b := newBig(t, 48<<20)
	b.wire.delay = slowPart
	cfg := slowConfig("none")
	r := b.runner(t, b.st, cfg)
	first, err := withDeadline(r, b.export(t, r), 1500*time.Millisecond)
	if err != nil || first.Next == nil || first.Next.StoreCheckpoint.SQLOffset == 0 {
		t.Fatalf("first invocation: %+v, %v; want a checkpoint past byte 0", first, err)
	}
	b.wire.delay = 0
	dcfg := d1.NewConfig(b.e.emu.AccountID(), b.e.emu.Token(), b.e.emu.BaseURL)
	dcfg.HTTPClient = &http.Client{Transport: noRange{b.e.emu.HTTP.Client().Transport}}
	api, err := d1.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := backup.NewRunner(api, b.st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, _, err := r2.StoreAll(context.Background(), *first.Next, 0)
	if err != nil {
		t.Fatal(err)
	}
	b.checkStored(t, sum, "none", nil)
}
