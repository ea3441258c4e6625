package backup_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/zstd"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/restore"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
	"github.com/d1backup/d1backup/internal/store/r2"
	"github.com/d1backup/d1backup/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testConfig is the pipeline's configuration with the settings' defaults,
// the given compression, and no waiting.
func testConfig(compression string) backup.Config {
	cfg := config.Defaults().Backup("test")
	cfg.Compression = compression
	cfg.Sleep = func(context.Context, time.Duration) error { return nil }
	if os.Getenv("DEBUGLOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return cfg
}

const seed = `
CREATE TABLE customers (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, notes TEXT, photo BLOB);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), total REAL);
CREATE INDEX orders_customer ON orders(customer_id);
INSERT INTO customers (name, notes, photo) VALUES ('Ada', 'likes ''quotes''
and newlines', X'00FF10'), ('Bob', NULL, NULL);
INSERT INTO orders VALUES (1, 1, 9.5), (2, 2, 12.25), (3, 1, 9007199254740993);
`

type env struct {
	emu  *d1emutest.Emulator
	api  *d1.Client
	db   d1emu.Database
	dump []byte
}

func newEnv(t *testing.T, opts d1emu.Options) *env {
	t.Helper()
	emu := d1emutest.Start(t, opts)
	db := emu.MustCreate(t, "shop", seed)
	cfg := d1.NewConfig(emu.AccountID(), emu.Token(), emu.BaseURL)
	cfg.HTTPClient, cfg.MaxRetries = emu.HTTP.Client(), 0
	api, err := d1.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{emu: emu, api: api, db: db, dump: emu.MustDump(t, db.UUID)}
}

func runner(t *testing.T, api backup.D1, st store.Store, compression string) *backup.Runner {
	t.Helper()
	cfg := testConfig(compression)
	cfg.PollInterval = time.Millisecond
	r, err := backup.NewRunner(api, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func r2Store(t *testing.T, s *testenv.S3, bucket string, hc *http.Client) *r2.Store {
	t.Helper()
	if hc == nil {
		hc = s.HTTPClient
	}
	st, err := r2.New(r2.Config{
		Endpoint: s.Endpoint, Region: s.Region, Bucket: bucket, Prefix: "backups",
		AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
		PartSize: 5 << 20, Concurrency: 2, HTTPClient: hc,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func get(t *testing.T, st store.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decompress(t *testing.T, compression string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch compression {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		return b
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(t *testing.T, st store.Store) []string {
	t.Helper()
	objs, err := st.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

// TestBackupRoundTrip backs up through the whole pipeline into versitygw
// and a folder, for every compression, and checks what a user would: the
// stored bytes decompress to the emulator's dump, and the manifest's hashes
// and sizes describe what is stored.
func TestBackupRoundTrip(t *testing.T) {
	s := testenv.RequireS3(t)
	for _, compression := range []string{"gzip", "zstd", "none"} {
		for _, dest := range []string{"r2", "local"} {
			t.Run(compression+"/"+dest, func(t *testing.T) {
				e := newEnv(t, d1emu.Options{ExportPolls: 2})
				var st store.Store
				if dest == "r2" {
					st = r2Store(t, s, s.NewBucket(t), nil)
				} else {
					var err error
					if st, err = local.New(t.TempDir()); err != nil {
						t.Fatal(err)
					}
				}
				sum, err := runner(t, e.api, st, compression).Run(context.Background(), backup.Target{DatabaseName: "shop"})
				if err != nil {
					t.Fatal(err)
				}
				if want, _ := backup.DumpKey(e.db.UUID, sum.Bookmark, compression, false); sum.Key != want {
					t.Errorf("key = %s, want %s", sum.Key, want)
				}
				stored := get(t, st, sum.Key)
				sql := decompress(t, compression, stored)
				if got, want := sha(sql), sha(e.dump); got != want {
					t.Fatalf("SQL sha256 = %s, want the emulator dump's %s", got, want)
				}
				m, err := backup.ReadManifest(context.Background(), st, sum.ManifestKey)
				if err != nil {
					t.Fatal(err)
				}
				checks := []struct {
					name      string
					got, want any
				}{
					{"database_id", m.DatabaseID, e.db.UUID},
					{"database_name", m.DatabaseName, "shop"},
					{"bookmark", m.Bookmark, sum.Bookmark},
					{"sql_bytes", m.SQLBytes, int64(len(e.dump))},
					{"sql_sha256", m.SQLSHA256, sha(e.dump)},
					{"stored_bytes", m.StoredBytes, int64(len(stored))},
					{"stored_sha256", m.StoredSHA256, sha(stored)},
					{"compression", m.Compression, compression},
					{"tool_version", m.ToolVersion, "test"},
					{"times ordered", !m.ExportCompletedAt.Before(m.ExportStartedAt) && !m.ExportStartedAt.IsZero(), true},
				}
				for _, c := range checks {
					if c.got != c.want {
						t.Errorf("manifest %s = %v, want %v", c.name, c.got, c.want)
					}
				}

				// A rerun of the same export neither duplicates nor overwrites.
				before := keys(t, st)
				again, err := runner(t, e.api, st, compression).Run(context.Background(), backup.Target{DatabaseID: e.db.UUID})
				if err != nil {
					t.Fatal(err)
				}
				if !again.AlreadyExisted || again.Key != sum.Key {
					t.Errorf("rerun = %+v, want AlreadyExisted at %s", again, sum.Key)
				}
				if got := keys(t, st); strings.Join(got, ",") != strings.Join(before, ",") {
					t.Errorf("rerun changed the objects: %v, was %v", got, before)
				}
			})
		}
	}
}

// TestNewDataNewKey: a write to the database gives a new bookmark and so a
// second backup beside the first.
func TestNewDataNewKey(t *testing.T) {
	e := newEnv(t, d1emu.Options{})
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first, err := runner(t, e.api, st, "gzip").Run(context.Background(), backup.Target{DatabaseName: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.emu.Exec(e.db.UUID, "INSERT INTO customers (name) VALUES ('Cy')"); err != nil {
		t.Fatal(err)
	}
	second, err := runner(t, e.api, st, "gzip").Run(context.Background(), backup.Target{DatabaseName: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Key == first.Key || second.Bookmark <= first.Bookmark {
		t.Fatalf("second backup %s (bookmark %s) should follow %s", second.Key, second.Bookmark, first.Key)
	}
	ms, _, err := backup.ListManifests(context.Background(), st, backup.DatabasePrefix(e.db.UUID))
	if err != nil || len(ms) != 2 {
		t.Fatalf("ListManifests = %d, %v; want 2", len(ms), err)
	}
}

// failPart makes UploadPart number n fail at the transport, against the
// real server, as a dropped connection would.
type failPart struct {
	base  http.RoundTripper
	n     string
	fired atomic.Bool
}

func (f *failPart) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Query().Get("partNumber") == f.n {
		f.fired.Store(true)
		return nil, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return f.base.RoundTrip(req)
}

// TestFailuresLeaveNoPartialBackup: a truncated download and a failing
// upload end in an error and leave no object and no manifest under the
// backup's keys. A failed upload leaves no unfinished upload either; a
// failed download leaves a checkpoint (what was uploaded is kept), and a
// rerun goes on from it to a complete backup that leaves nothing behind.
func TestFailuresLeaveNoPartialBackup(t *testing.T) {
	s := testenv.RequireS3(t)
	// Big enough for several 5 MiB parts.
	big := "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);\n" +
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 12) INSERT INTO blobs SELECT i, randomblob(1048576) FROM n;"
	for _, tt := range []struct {
		name        string
		compression string
		fault       *d1emu.Fault
		failPart    bool
		want        any
	}{
		{"truncated download/gzip", "gzip", &d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultTruncate, Times: 10}, false, new(*d1.DownloadError)},
		{"truncated download/none", "none", &d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultTruncate, Times: 10}, false, new(*d1.DownloadError)},
		{"failing upload/gzip", "gzip", nil, true, new(*backup.StoreUnavailableError)},
		{"failing upload/none", "none", nil, true, new(*backup.StoreUnavailableError)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, d1emu.Options{})
			db, err := e.emu.CreateDatabase("big", big)
			if err != nil {
				t.Fatal(err)
			}
			if tt.fault != nil {
				e.emu.InjectFault(*tt.fault)
			}
			bucket := s.NewBucket(t)
			hc := s.HTTPClient
			fp := &failPart{base: s.HTTPClient.Transport, n: "2"}
			if tt.failPart {
				hc = &http.Client{Transport: fp}
			}
			st := r2Store(t, s, bucket, hc)
			_, err = runner(t, e.api, st, tt.compression).Run(context.Background(), backup.Target{DatabaseName: "big"})
			if err == nil {
				t.Fatal("backup succeeded, want failure")
			}
			if !errors.As(err, tt.want) {
				t.Fatalf("error %T (%v), want %T", err, err, tt.want)
			}
			if tt.failPart && !fp.fired.Load() {
				t.Fatal("the upload never reached part 2: the test proves nothing")
			}
			clean := r2Store(t, s, bucket, nil)
			for _, k := range keys(t, clean) {
				if pk, ok := backup.ParseKey(k); !ok || !pk.Checkpoint || tt.failPart {
					t.Errorf("object left behind: %s", k)
				}
			}
			if tt.failPart {
				if n := openUploads(t, s, bucket); n != 0 {
					t.Errorf("%d multipart uploads left open", n)
				}
				return
			}
			// The rerun goes on where the failed one stopped.
			e.emu.ClearFaults()
			sum, err := runner(t, e.api, clean, tt.compression).Run(context.Background(), backup.Target{DatabaseName: "big"})
			if err != nil {
				t.Fatalf("rerun: %v", err)
			}
			if got, want := sha(decompress(t, tt.compression, get(t, clean, sum.Key))), sha(e.emu.MustDump(t, db.UUID)); got != want || sum.SQLSHA256 != want {
				t.Fatalf("rerun stored SQL %s (summary %s), want %s", got, sum.SQLSHA256, want)
			}
			if got := keys(t, clean); len(got) != 2 {
				t.Errorf("after the rerun: %v, want the dump and its manifest", got)
			}
			if n := openUploads(t, s, bucket); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
		})
	}
}

func openUploads(t *testing.T, s *testenv.S3, bucket string) int {
	t.Helper()
	ups, err := s.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	return len(ups.Uploads)
}

// TestRunRecovers: passing faults are retried and a stopped export is
// restarted; permanent ones end the run with their class.
func TestRunRecovers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		faults []d1emu.Fault
		method string
		want   any
	}{
		{"truncated once", []d1emu.Fault{{Endpoint: "download", Kind: d1emu.FaultTruncate}}, "", nil},
		{"expired URL", []d1emu.Fault{{Endpoint: "download", Kind: d1emu.FaultExpired}}, "", nil},
		{"not exporting", []d1emu.Fault{{Endpoint: "poll", Kind: d1emu.FaultNotExporting}}, "", nil},
		{"busy then free", []d1emu.Fault{{Endpoint: "export", Kind: d1emu.FaultBusy, Times: 2}}, "", nil},
		{"rate limited", []d1emu.Fault{{Endpoint: "export", Kind: d1emu.FaultRateLimit, RetryAfter: 600}}, "", nil},
		{"expired forever", []d1emu.Fault{{Endpoint: "download", Kind: d1emu.FaultExpired, Times: 10}}, "", new(*backup.TooManyRestartsError)},
		{"export error", []d1emu.Fault{{Endpoint: "any", Kind: d1emu.FaultExportError}}, backup.MethodExport, new(*d1.ExportFailedError)},
		{"bad token", []d1emu.Fault{{Endpoint: "any", Kind: d1emu.FaultBadToken}}, "", new(*d1.AuthError)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, d1emu.Options{ExportPolls: 1})
			for _, f := range tt.faults {
				e.emu.InjectFault(f)
			}
			st, err := local.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig("gzip")
			cfg.PollInterval = time.Millisecond
			if tt.method != "" {
				cfg.Method = tt.method
			}
			r, err := backup.NewRunner(e.api, st, cfg)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := r.Run(context.Background(), backup.Target{DatabaseName: "shop"})
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if got, want := sum.SQLSHA256, sha(e.dump); got != want {
					t.Errorf("sql sha256 %s, want %s", got, want)
				}
				return
			}
			if !errors.As(err, tt.want) {
				t.Fatalf("Run error %T (%v), want %T", err, err, tt.want)
			}
			if got := keys(t, st); len(got) != 0 {
				t.Errorf("objects left behind: %v", got)
			}
		})
	}
}

// TestExportDeadline: polling past the deadline fails with a timeout and
// says so.
func TestExportDeadline(t *testing.T) {
	e := newEnv(t, d1emu.Options{ExportPolls: 1000})
	st, _ := local.New(t.TempDir())
	now := time.Now()
	cfg := testConfig("gzip")
	cfg.ExportTimeout = time.Minute
	cfg.Now = func() time.Time { now = now.Add(10 * time.Second); return now }
	r, err := backup.NewRunner(e.api, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Run(context.Background(), backup.Target{DatabaseName: "shop"})
	var te *backup.ExportTimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Run = %v, want ExportTimeoutError", err)
	}
	if te.Polls < 3 || te.Polls > 7 {
		t.Errorf("timed out after %d polls, want about 5", te.Polls)
	}
}

func TestClassified(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("wrapped: %w", &d1.RateLimitError{Op: "x"}), "*d1.RateLimitError"},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", &backup.ConflictError{Key: "k"})), "*backup.ConflictError"},
		{errors.New("plain"), "*backup.InternalError"},
	} {
		if got := fmt.Sprintf("%T", backup.Classified(tt.err)); got != tt.want {
			t.Errorf("Classified(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// TestEncryption: dumps encrypted to age recipients open only with their
// identity, and the manifest says so.
func TestEncryption(t *testing.T) {
	e := newEnv(t, d1emu.Options{})
	id1, _ := age.GenerateX25519Identity()
	id2, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, compression := range []string{"zstd", "none"} {
		if err := e.emu.Exec(e.db.UUID, "INSERT INTO customers (name) VALUES ('"+compression+"')"); err != nil {
			t.Fatal(err)
		}
		dump := bytes.NewBuffer(e.emu.MustDump(t, e.db.UUID))
		cfg := testConfig(compression)
		cfg.Recipients = []string{id1.Recipient().String(), id2.Recipient().String()}
		r, err := backup.NewRunner(e.api, st, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := r.Run(context.Background(), backup.Target{DatabaseName: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(sum.Key, ".age") {
			t.Errorf("key %s does not end in .age", sum.Key)
		}
		stored := get(t, st, sum.Key)
		if bytes.Contains(stored, []byte("CREATE TABLE")) {
			t.Fatal("stored bytes hold plain SQL")
		}
		for _, id := range []*age.X25519Identity{id1, id2} {
			dr, err := age.Decrypt(bytes.NewReader(stored), id)
			if err != nil {
				t.Fatalf("decrypt with a recipient's identity: %v", err)
			}
			plain, err := io.ReadAll(dr)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sha(decompress(t, compression, plain)), sha(dump.Bytes()); got != want {
				t.Fatalf("%s: decrypted SQL sha256 %s, want %s", compression, got, want)
			}
		}
		if _, err := age.Decrypt(bytes.NewReader(stored), other); err == nil {
			t.Error("a stranger's identity decrypted the dump")
		}
		m, err := backup.ReadManifest(context.Background(), st, sum.ManifestKey)
		if err != nil {
			t.Fatal(err)
		}
		if m.Encryption == nil || m.Encryption.Type != "age" || len(m.Encryption.Recipients) != 2 || m.Encryption.Recipients[0] != id1.Recipient().String() {
			t.Errorf("manifest encryption = %+v, want age with both recipients", m.Encryption)
		}
		if m.StoredSHA256 != sha(stored) {
			t.Errorf("stored_sha256 %s, want %s", m.StoredSHA256, sha(stored))
		}
	}
	if _, err := backup.NewRunner(e.api, st, func() backup.Config { c := testConfig("gzip"); c.Recipients = []string{"age1notakey"}; return c }()); err == nil || !strings.Contains(err.Error(), "age-keygen") {
		t.Errorf("bad recipient: %v, want a ConfigError pointing at age-keygen", err)
	}
}

// TestPreflightBeforeExport: a destination that cannot take the backup
// (missing bucket, wrong secret, a folder that cannot be made) fails before D1 is asked
// for an export, which would block the database; nothing is left behind.
func TestPreflightBeforeExport(t *testing.T) {
	s := testenv.RequireS3(t)
	bucket := s.NewBucket(t)
	for _, tt := range []struct {
		name string
		st   func(t *testing.T) store.Store
	}{
		{"missing bucket", func(t *testing.T) store.Store { return r2Store(t, s, "no-such-bucket", nil) }},
		{"wrong secret", func(t *testing.T) store.Store {
			st, err := r2.New(r2.Config{Endpoint: s.Endpoint, Region: s.Region, Bucket: bucket, AccessKeyID: s.AccessKeyID,
				SecretAccessKey: "wrong-secret", PartSize: r2.MinPartSize, Concurrency: 1, HTTPClient: s.HTTPClient})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"folder that cannot be made", func(t *testing.T) store.Store {
			// A folder below a file cannot be created, whoever runs this.
			f := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := local.New(filepath.Join(f, "backups"))
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, d1emu.Options{})
			st := tt.st(t)
			e.emu.ResetRequests()
			_, err := runner(t, e.api, st, "gzip").Run(context.Background(), backup.Target{DatabaseName: "shop"})
			var sf *backup.StoreFailedError
			if !errors.As(err, &sf) || !strings.Contains(err.Error(), "preflight") {
				t.Fatalf("Run = %v, want a StoreFailedError from the preflight", err)
			}
			// A folder's failure does not send people looking at R2.
			if _, isFolder := st.(*local.Store); isFolder == strings.Contains(err.Error(), "R2") {
				t.Errorf("error %q: the hint does not fit the destination", err)
			}
			for _, r := range e.emu.Requests() {
				if r.Endpoint == d1emu.EndpointExport || r.Endpoint == d1emu.EndpointPoll {
					t.Errorf("D1 was asked to export (%s %s) though the destination cannot take the backup", r.Method, r.Path)
				}
			}
		})
	}
	if got := keys(t, r2Store(t, s, bucket, nil)); len(got) != 0 {
		t.Errorf("objects left in the bucket: %v", got)
	}
}

// TestAddACodec: a compression is one codec.Register call. This none-like
// codec exists only in this test; the store step, the key grammar, the
// manifest and verification all pick it up from the registry.
func TestAddACodec(t *testing.T) {
	none, err := codec.Lookup(codec.None)
	if err != nil {
		t.Fatal(err)
	}
	codec.Register(codec.Codec{Name: "identity-test", Ext: ".idt", ContentType: "application/sql", NewWriter: none.NewWriter, NewReader: none.NewReader})
	e := newEnv(t, d1emu.Options{})
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := runner(t, e.api, st, "identity-test").Run(context.Background(), backup.Target{DatabaseName: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(sum.Key, ".sql.idt") || sum.Compression != "identity-test" {
		t.Errorf("key %s compression %s, want .sql.idt and identity-test", sum.Key, sum.Compression)
	}
	if k, ok := backup.ParseKey(sum.Key); !ok || k.Compression != "identity-test" {
		t.Errorf("ParseKey(%s) = %+v, %v", sum.Key, k, ok)
	}
	if got := get(t, st, sum.Key); !bytes.Equal(got, e.dump) {
		t.Errorf("stored %d bytes, want the dump's %d", len(got), len(e.dump))
	}
	rep, err := restore.Verify(context.Background(), restore.Source{Store: st, Key: sum.Key}, restore.Options{TempDir: t.TempDir()})
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v", err)
	}
}
