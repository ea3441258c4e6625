package restore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/restore"
	"github.com/d1backup/d1backup/internal/store"
)

// countingStore counts the bytes read from the objects it serves.
type countingStore struct {
	store.Store
	read atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := c.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.TeeReader(rc, writerFunc(func(p []byte) { c.read.Add(int64(len(p))) })), rc}, nil
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// putObject stores obj under key with a manifest consistent with it, but
// claiming sqlBytes of SQL whose hash is that of claimed.
// testDatabaseID is the database the hand-made backups claim to be of.
const testDatabaseID = "00000000-0000-4000-8000-000000000000"

// testKey is a key in d1backup's grammar for a hand-made backup called name
// (which becomes its bookmark) stored with compression.
func testKey(name, compression string) string {
	bookmark := regexp.MustCompile(`[^0-9A-Za-z-]`).ReplaceAllString(name, "-")
	key, err := backup.DumpKey(testDatabaseID, bookmark, compression, false)
	if err != nil {
		panic(err)
	}
	return key
}

func putObject(t *testing.T, st store.Store, key, compression string, obj []byte, sqlBytes int64, claimed []byte) {
	t.Helper()
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	k, ok := backup.ParseKey(key)
	if !ok {
		t.Fatalf("%s is not a backup key: use testKey", key)
	}
	m := backup.Manifest{Format: backup.ManifestFormat, Tool: "d1backup", DatabaseID: k.DatabaseID, DatabaseName: "x", Bookmark: k.Bookmark, Key: key,
		SQLBytes: sqlBytes, SQLSHA256: sum(claimed), StoredBytes: int64(len(obj)), StoredSHA256: sum(obj), Compression: compression}
	mb, _ := json.Marshal(m)
	ctx := context.Background()
	if _, err := st.Put(ctx, key, bytes.NewReader(obj), store.PutOptions{Size: int64(len(obj))}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, key+backup.ManifestSuffix, bytes.NewReader(mb), store.PutOptions{Size: int64(len(mb))}); err != nil {
		t.Fatal(err)
	}
}

// TestDecompressionBombRefusedAtTheManifestSize: 256 MiB of SQL in a
// small object whose manifest says 2 MiB is refused once 2 MiB came out,
// having read a sliver of the object, and leaving no file behind.
func TestDecompressionBombRefusedAtTheManifestSize(t *testing.T) {
	t.Parallel()
	st, tmp, _ := hostileStore(t)
	cs := &countingStore{Store: st}
	const claimed = 2 << 20
	sql := append([]byte("CREATE TABLE t (a);\n"), bytes.Repeat([]byte(" "), 256<<20)...)
	for _, tt := range []struct {
		compression string
		compress    func([]byte) []byte
	}{
		{"gzip", func(b []byte) []byte {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(b)
			zw.Close()
			return buf.Bytes()
		}},
		{"zstd", func(b []byte) []byte {
			zw, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
			return zw.EncodeAll(b, nil)
		}},
	} {
		t.Run(tt.compression, func(t *testing.T) {
			obj := tt.compress(sql)
			key := testKey("bomb-"+tt.compression, tt.compression)
			putObject(t, st, key, tt.compression, obj, claimed, sql[:claimed])
			before := cs.read.Load()
			rep, err := restore.Verify(context.Background(), restore.Source{Store: cs, Key: key}, restore.Options{TempDir: tmp})
			if got, want := failed(rep, err), restore.CheckStoredSHA256; got != want || !strings.Contains(err.Error(), "decompresses to more than the manifest's 2097152 SQL bytes") {
				t.Errorf("failed check %q, want %q saying it decompresses to more (%v)", got, want, err)
			}
			read := cs.read.Load() - before
			t.Logf("read %d bytes of the %d-byte object (%d MiB of SQL)", read, len(obj), len(sql)>>20)
			if read > int64(len(obj))/4 {
				t.Errorf("read %d bytes of the %d-byte object, want it left unread past the manifest's size", read, len(obj))
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("files left: %v", ents)
			}
		})
	}
}

// TestStoredObjectLongerThanItsManifest: an object that goes on past the
// manifest's stored_bytes is refused there, not read to its end.
func TestStoredObjectLongerThanItsManifest(t *testing.T) {
	t.Parallel()
	st, tmp, _ := hostileStore(t)
	cs := &countingStore{Store: st}
	sql := []byte("CREATE TABLE t (a);\nINSERT INTO t VALUES(1);\n")
	obj := append(append([]byte(nil), sql...), bytes.Repeat([]byte("-- more\n"), 8<<20)...)
	key := testKey("long", "none")
	putObject(t, st, key, "none", obj, int64(len(sql)), sql)
	// The manifest describes only the first bytes of the object.
	mk := key + backup.ManifestSuffix
	rc, _ := st.Get(context.Background(), mk)
	var m backup.Manifest
	json.NewDecoder(rc).Decode(&m)
	rc.Close()
	s := sha256.Sum256(sql)
	m.StoredBytes, m.StoredSHA256 = int64(len(sql)), hex.EncodeToString(s[:])
	mb, _ := json.Marshal(m)
	if _, err := st.Put(context.Background(), mk, bytes.NewReader(mb), store.PutOptions{Size: int64(len(mb)), Replace: true}); err != nil {
		t.Fatal(err)
	}
	_, err := restore.ToSQLite(context.Background(), restore.Source{Store: cs, Key: key}, tmp+"/out.sqlite", false, restore.Options{TempDir: tmp})
	var ie *restore.IntegrityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "larger than the manifest's 45 bytes") {
		t.Errorf("got %v, want an IntegrityError: larger than the manifest says", err)
	}
	if read := cs.read.Load(); read > 1<<20 {
		t.Errorf("read %d bytes of the %d-byte object", read, len(obj))
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
}
