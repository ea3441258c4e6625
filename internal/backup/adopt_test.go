package backup_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/clock"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
	"github.com/d1backup/d1backup/internal/testenv"
)

func hasNote(notes []string, part string) bool {
	return slices.ContainsFunc(notes, func(s string) bool { return strings.Contains(s, part) })
}

// TestAdoptOrphan: a dump left without its manifest (a run stopped between
// the two) is completed by a rerun of the same export, for every
// compression and both destinations: the manifest is written, nothing is
// uploaded again, exit 0. The dump is vouched for by its SQL, read back.
func TestAdoptOrphan(t *testing.T) {
	s := testStores(t)
	for _, compression := range []string{"none", "gzip", "zstd"} {
		for _, dest := range []string{"r2", "local"} {
			t.Run(compression+"/"+dest, func(t *testing.T) {
				e := newEnv(t, d1emu.Options{})
				st := s.open(t, dest)
				ctx := context.Background()
				first, err := runner(t, e.api, st, compression).Run(ctx, backup.Target{DatabaseName: "shop"})
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Delete(ctx, first.ManifestKey); err != nil {
					t.Fatal(err)
				}
				stored := get(t, st, first.Key)
				again, err := runner(t, e.api, st, compression).Run(ctx, backup.Target{DatabaseName: "shop"})
				if err != nil {
					t.Fatalf("rerun over a dump without its manifest: %v", err)
				}
				if !again.AlreadyExisted || again.Key != first.Key || again.SQLSHA256 != sha(e.dump) || again.StoredSHA256 != sha(stored) {
					t.Errorf("rerun = %+v, want the existing dump adopted", again)
				}
				if !hasNote(again.Notes, "completed an earlier unfinished backup") {
					t.Errorf("notes %q do not say the backup was completed", again.Notes)
				}
				m, err := backup.ReadManifest(ctx, st, first.ManifestKey)
				if err != nil || m.SQLSHA256 != sha(e.dump) || m.StoredSHA256 != sha(stored) {
					t.Errorf("manifest %+v, %v", m, err)
				}
				if got := keys(t, st); strings.Join(got, " ") != first.Key+" "+first.ManifestKey {
					t.Errorf("objects %v", got)
				}
			})
		}
	}
}

// TestOrphanOfAnotherExport: an object under the key that is not this
// export's dump (other SQL, or not even the compression) is a conflict and
// is left untouched.
func TestOrphanOfAnotherExport(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func(t *testing.T) []byte
	}{
		{"other SQL", func(t *testing.T) []byte {
			return gzipped(t, []byte("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE x(a);\n"))
		}},
		{"not gzip", func(*testing.T) []byte { return []byte("plain text, not a gzip stream") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, d1emu.Options{})
			st, err := local.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			exp, err := runner(t, e.api, st, "gzip").Start(ctx, backup.Export{DatabaseName: "shop"})
			if err != nil {
				t.Fatal(err)
			}
			key, _ := backup.DumpKey(exp.DatabaseID, exp.Bookmark, "gzip", false)
			body := tc.body(t)
			if _, err := st.Put(ctx, key, bytes.NewReader(body), store.PutOptions{Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			_, err = runner(t, e.api, st, "gzip").Store(ctx, exp)
			var ce *backup.ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("Store over another export's object: %v, want ConflictError", err)
			}
			if !bytes.Equal(get(t, st, key), body) {
				t.Error("the object was changed")
			}
			if got := keys(t, st); len(got) != 1 {
				t.Errorf("objects %v, want the one object", got)
			}
		})
	}
}

// TestEncryptedOrphan: an encrypted dump without a manifest cannot be read
// back without the identity. A young one may be a concurrent backup's: the
// rerun fails with a retryable error and leaves it. An old one is an
// unfinished backup: it is replaced, and the output says so.
func TestEncryptedOrphan(t *testing.T) {
	e := newEnv(t, d1emu.Options{})
	dir := t.TempDir()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	cfg := testConfig("gzip")
	cfg.Recipients = []string{id.Recipient().String()}
	r, err := backup.NewRunner(e.api, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := r.Run(ctx, backup.Target{DatabaseName: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, first.ManifestKey); err != nil {
		t.Fatal(err)
	}
	orphan := get(t, st, first.Key)

	_, err = r.Run(ctx, backup.Target{DatabaseName: "shop"})
	var su *backup.StoreUnavailableError
	if !errors.As(err, &su) || !strings.Contains(err.Error(), "may still be finishing") {
		t.Fatalf("rerun over a young encrypted orphan: %v, want a retryable StoreUnavailableError", err)
	}
	if !bytes.Equal(get(t, st, first.Key), orphan) {
		t.Fatal("the young orphan was changed")
	}

	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(first.Key)), old, old); err != nil {
		t.Fatal(err)
	}
	again, err := r.Run(ctx, backup.Target{DatabaseName: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if again.AlreadyExisted || !hasNote(again.Notes, "replaced an encrypted dump without a manifest") {
		t.Errorf("rerun over an old encrypted orphan = %+v, want a new backup that says it replaced it", again)
	}
	stored := get(t, st, again.Key)
	dr, err := age.Decrypt(bytes.NewReader(stored), id)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(dr)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha(decompress(t, "gzip", plain)); got != sha(e.dump) || again.StoredSHA256 != sha(stored) {
		t.Errorf("replaced backup: SQL %s, want %s", got, sha(e.dump))
	}
}

// TestEncryptedOrphanOfOwnUpload: a run that completed its multipart
// upload but died before the manifest left its final checkpoint: the rerun
// vouches for the encrypted dump by that (its parts, or its stored SHA-256)
// without the identity.
func TestEncryptedOrphanOfOwnUpload(t *testing.T) {
	b, _ := sqliteBig(t)
	b.wire.delay = 0
	b.dumpNow(t)
	id, _ := age.GenerateX25519Identity()
	cfg := resumeConfig("gzip", id.Recipient().String())
	b.wire.crashWhen = func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, backup.ManifestSuffix)
	}
	r := b.runner(t, b.st, cfg)
	if _, err := r.Run(context.Background(), backup.Target{DatabaseName: "blobs"}); err == nil {
		t.Fatal("the run whose manifest write was cut succeeded")
	}
	b.wire = newWire(b.s.HTTPClient.Transport)
	b.st = b.store(t)
	sum, err := b.runner(t, b.st, cfg).Run(context.Background(), backup.Target{DatabaseName: "blobs"})
	if err != nil {
		t.Fatal(err)
	}
	// The rerun continues the interrupted run (its checkpoint), so the
	// backup is its own, not one that already existed.
	if sum.AlreadyExisted || !hasNote(sum.Notes, "completed an interrupted backup") {
		t.Errorf("rerun = %+v, want the dump vouched for by its final checkpoint", sum)
	}
	b.checkStored(t, sum, "gzip", id)
}

// TestConcurrentEncryptedBackups: two backups of one export at once, both
// encrypted (so neither can read the other's dump): one stores it, the
// other reports it already stored, once the winner's manifest says the
// same SQL. Nothing is duplicated or left open.
func TestConcurrentEncryptedBackups(t *testing.T) {
	for _, size := range []string{"one part", "several parts"} {
		t.Run(size, func(t *testing.T) {
			b, _ := sqliteBig(t)
			b.wire.delay = 0
			if size == "one part" {
				b.db = b.e.db
			}
			b.dumpNow(t)
			id, _ := age.GenerateX25519Identity()
			cfg := resumeConfig("zstd", id.Recipient().String())
			cfg.Sleep = clock.Sleep // the loser really waits for the manifest
			exp := b.export(t, b.runner(t, b.st, cfg))
			var wg sync.WaitGroup
			sums := make([]backup.Summary, 2)
			errs := make([]error, 2)
			for i := range sums {
				wg.Go(func() {
					var res backup.StoreResult
					res, errs[i] = b.runner(t, b.st, cfg).Store(context.Background(), exp)
					if res.Summary != nil {
						sums[i] = *res.Summary
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if sums[0].AlreadyExisted == sums[1].AlreadyExisted || sums[0].Key != sums[1].Key || sums[0].SQLSHA256 != b.sha || sums[1].SQLSHA256 != b.sha {
				t.Fatalf("results %+v and %+v: want one stored, one already stored, same SQL", sums[0], sums[1])
			}
			winner := sums[0]
			if winner.AlreadyExisted {
				winner = sums[1]
			}
			b.checkStored(t, winner, "zstd", id)
		})
	}
}

// TestHostileCheckpoint: a checkpoint in the bucket is input like any
// other. Damaged, inconsistent or forged ones are refused (the output says
// so), their upload aborted when it can be named, and the backup made from
// the start, correct.
func TestHostileCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mangle func(hdr, tail []byte) []byte
	}{
		{"not JSON", func(hdr, tail []byte) []byte { return append([]byte("{nope\n"), tail...) }},
		{"no newline", func(hdr, tail []byte) []byte { return bytes.Repeat([]byte("x"), 5<<20) }},
		{"tail cut", func(hdr, tail []byte) []byte { return join(hdr, tail[:len(tail)/2]) }},
		{"tail changed", func(hdr, tail []byte) []byte { t := bytes.Clone(tail); t[0] ^= 1; return join(hdr, t) }},
		{"bytes after the tail", func(hdr, tail []byte) []byte { return append(join(hdr, tail), 'x') }},
		{"format 2", func(hdr, tail []byte) []byte { return join(set(hdr, `"format":1`, `"format":2`), tail) }},
		{"offset past the end", func(hdr, tail []byte) []byte { return join(setNum(hdr, "sql_offset", "99999999999"), tail) }},
		{"parts out of order", func(hdr, tail []byte) []byte { return join(set(hdr, `"number":1,`, `"number":7,`), tail) }},
		{"part size", func(hdr, tail []byte) []byte { return join(setNum(hdr, "part_size", "1048576"), tail) }},
		{"hash state", func(hdr, tail []byte) []byte { return join(setNum(hdr, "sql_sha256_state", `"AAAA"`), tail) }},
		{"another dump's key", func(hdr, tail []byte) []byte { return join(set(hdr, `.sql.zst"`, `.sql.gz"`), tail) }},
		{"upload ID with a newline", func(hdr, tail []byte) []byte { return join(setNum(hdr, "upload_id", `"a\nb"`), tail) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // mostly waiting on the slowed parts
			b, _ := sqliteBig(t)
			b.dumpNow(t)
			cfg := slowConfig("zstd")
			r := b.runner(t, b.st, cfg)
			first, err := withDeadline(r, b.export(t, r), 1500*time.Millisecond)
			if err != nil || first.Next == nil {
				t.Fatalf("first invocation: %+v, %v; want a checkpoint", first, err)
			}
			key := first.Next.StoreCheckpoint.Key
			raw := get(t, b.st, key)
			i := bytes.IndexByte(raw, '\n')
			bad := tc.mangle(raw[:i+1], raw[i+1:])
			if _, err := b.st.Put(context.Background(), key, bytes.NewReader(bad), store.PutOptions{Size: int64(len(bad)), Replace: true}); err != nil {
				t.Fatal(err)
			}
			b.wire.delay = 0
			sum, _, err := r.StoreAll(context.Background(), *first.Next, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !hasNote(sum.Notes, "not a usable d1backup checkpoint") {
				t.Errorf("notes %q do not say the checkpoint was refused", sum.Notes)
			}
			switch tc.name {
			case "not JSON", "no newline", "another dump's key", "upload ID with a newline":
				// Its upload cannot be named (an ID claimed for another
				// key is never used): retention aborts it.
				if err := b.st.AbortUpload(context.Background(), strings.TrimSuffix(key, backup.CheckpointSuffix), uploadIDOf(t, raw)); err != nil {
					t.Fatal(err)
				}
			}
			b.checkStored(t, sum, "zstd", nil)
		})
	}
}

func join(hdr, tail []byte) []byte { return append(bytes.Clone(hdr), tail...) }

func set(hdr []byte, old, new string) []byte {
	return bytes.Replace(hdr, []byte(old), []byte(new), 1)
}

// setNum replaces the value of a top-level JSON field that is a number or
// a simple string.
func setNum(hdr []byte, field, value string) []byte {
	i := bytes.Index(hdr, []byte(`"`+field+`":`))
	if i < 0 {
		panic("no field " + field)
	}
	start := i + len(field) + 3
	end := start + bytes.IndexAny(hdr[start:], ",}")
	return []byte(string(hdr[:start]) + value + string(hdr[end:]))
}

func uploadIDOf(t *testing.T, raw []byte) string {
	t.Helper()
	i := bytes.Index(raw, []byte(`"upload_id":"`))
	if i < 0 {
		t.Fatal("no upload ID in the checkpoint")
	}
	rest := raw[i+len(`"upload_id":"`):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// stores opens destinations for table tests.
type stores struct{ s3 *testenv.S3 }

func testStores(t *testing.T) stores { return stores{s3: testenv.RequireS3(t)} }

func (s stores) open(t *testing.T, dest string) store.Store {
	t.Helper()
	if dest == "r2" {
		return r2Store(t, s.s3, s.s3.NewBucket(t), nil)
	}
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestHostileStoreCheckpointInput: store_checkpoint comes back as step
// input, which anyone starting an execution can write. A key that is not a
// checkpoint of the export's database is refused, and nothing is touched.
func TestHostileStoreCheckpointInput(t *testing.T) {
	e := newEnv(t, d1emu.Options{})
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := runner(t, e.api, st, "gzip")
	kept, err := r.Run(ctx, backup.Target{DatabaseName: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := r.Start(ctx, backup.Export{DatabaseID: e.db.UUID})
	if err != nil {
		t.Fatal(err)
	}
	before := keys(t, st)
	for _, key := range []string{
		kept.Key,         // a dump
		kept.ManifestKey, // a manifest
		"11111111-2222-3333-4444-555555555555/00000001-aa.sql.gz.checkpoint", // another database's
		"../../etc/passwd.checkpoint",
		"",
	} {
		in := exp
		in.StoreCheckpoint = &backup.StoreCheckpoint{Key: key, Run: "0123456789abcdef"}
		_, err := r.Store(ctx, in)
		var ce *backup.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("store_checkpoint.key %q: %v, want a ConfigError", key, err)
		}
	}
	if got := keys(t, st); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Errorf("objects %v, were %v", got, before)
	}
}
