package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/d1backup/d1backup/internal/store"
)

// Retryabler is implemented by stores that can tell a passing failure from
// a lasting one (r2.Store); failures of other stores count as lasting.
type Retryabler interface {
	IsRetryable(err error) bool
}

// Store streams a completed export's dump into the store: download → SHA-256
// of the SQL → compression → upload with SHA-256 of the stored bytes, then
// writes the manifest. Memory stays bounded by the store's part buffers. If
// this export was stored before (same database and bookmark), Store writes
// nothing and reports the existing backup.
func (r *Runner) Store(ctx context.Context, exp Export) (Summary, error) {
	if exp.Status != StatusComplete || exp.SignedURL == "" {
		return Summary{}, &ConfigError{Msg: fmt.Sprintf("store needs a complete export with its URL; got status %q", exp.Status)}
	}
	key, err := DumpKey(exp.DatabaseID, exp.Bookmark, r.cfg.Compression, len(r.recipients) > 0)
	if err != nil {
		return Summary{}, err
	}
	if m, err := r.existing(ctx, exp); err != nil || m != nil {
		if err != nil {
			return Summary{}, err
		}
		r.log.Info("export already backed up", "database", exp.DatabaseName, "key", m.Key)
		return m.Summary(true), nil
	}

	dl, err := r.d1.Download(ctx, exp.SignedURL)
	if err != nil {
		return Summary{}, err
	}
	defer dl.Body.Close()

	m := &Manifest{
		Format: ManifestFormat, Tool: "d1backup", ToolVersion: r.cfg.ToolVersion,
		DatabaseID: exp.DatabaseID, DatabaseName: exp.DatabaseName, Bookmark: exp.Bookmark,
		Key: key, ExportStartedAt: exp.StartedAt, Compression: r.cfg.Compression,
	}
	if len(r.recipients) > 0 {
		m.Encryption = &Encryption{Type: "age", Recipients: r.cfg.Recipients}
	}
	if exp.CompletedAt != nil {
		m.ExportCompletedAt = *exp.CompletedAt
		m.BlockedSeconds = exp.CompletedAt.Sub(exp.StartedAt).Seconds()
	}

	sql := &hashCounter{h: sha256.New(), progress: r.cfg.Progress, total: dl.Size}
	src := &firstErr{r: io.TeeReader(dl.Body, sql)}
	var (
		stored           = sql
		body   io.Reader = src
		size             = dl.Size
		wait             = func() error { return src.err }
	)
	if r.cfg.Compression != CompressionNone || len(r.recipients) > 0 {
		stored, size = &hashCounter{h: sha256.New()}, -1
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := r.encode(pw, src)
			pw.CloseWithError(err)
			done <- err
		}()
		defer pr.Close()
		body = io.TeeReader(pr, stored)
		wait = func() error {
			pr.Close()
			err := <-done
			if src.err != nil || errors.Is(err, io.ErrClosedPipe) {
				return src.err
			}
			return err
		}
	}

	_, putErr := r.store.Put(ctx, key, body, store.PutOptions{ContentType: contentType(r.cfg.Compression), Size: size})
	// A failed download is the root cause of the failed upload it feeds.
	if srcErr := wait(); srcErr != nil {
		return Summary{}, srcErr
	}
	if putErr != nil {
		if errors.Is(putErr, store.ErrExists) {
			return r.adoptExisting(ctx, m, sql, stored)
		}
		return Summary{}, r.storeError("upload "+key, putErr)
	}
	m.SQLBytes, m.SQLSHA256 = sql.n, sql.sum()
	m.StoredBytes, m.StoredSHA256 = stored.n, stored.sum()
	if dl.Size >= 0 && sql.n != dl.Size {
		return Summary{}, &IntegrityError{Msg: fmt.Sprintf("dump of %s: stored %d bytes, D1 announced %d", exp.DatabaseName, sql.n, dl.Size)}
	}
	if err := r.writeManifest(ctx, m); err != nil {
		return Summary{}, err
	}
	r.log.Info("backup stored", "database", exp.DatabaseName, "key", key, "sql_bytes", m.SQLBytes, "stored_bytes", m.StoredBytes, "sql_sha256", m.SQLSHA256)
	return m.Summary(false), nil
}

// existing returns the manifest of an earlier backup of the same export.
func (r *Runner) existing(ctx context.Context, exp Export) (*Manifest, error) {
	objs, err := r.store.List(ctx, BookmarkPrefix(exp.DatabaseID, exp.Bookmark))
	if err != nil {
		return nil, r.storeError("list existing backups", err)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ManifestSuffix) {
			m, err := ReadManifest(ctx, r.store, o.Key)
			if err != nil {
				return nil, r.storeError("read existing manifest", err)
			}
			return m, nil
		}
	}
	return nil, nil
}

// adoptExisting handles a dump already under the key with no manifest: an
// earlier run stopped between the two writes. If its bytes are the ones just
// streamed, the backup is completed with a manifest; otherwise it conflicts.
func (r *Runner) adoptExisting(ctx context.Context, m *Manifest, sql, stored *hashCounter) (Summary, error) {
	rc, err := r.store.Get(ctx, m.Key)
	if err != nil {
		return Summary{}, r.storeError("read existing "+m.Key, err)
	}
	defer rc.Close()
	h := &hashCounter{h: sha256.New()}
	if _, err := io.Copy(h, rc); err != nil {
		return Summary{}, r.storeError("read existing "+m.Key, err)
	}
	if h.sum() != stored.sum() || h.n != stored.n {
		return Summary{}, &ConflictError{Key: m.Key, Msg: fmt.Sprintf("%d bytes with SHA-256 %s, this export gives %d bytes with %s", h.n, h.sum(), stored.n, stored.sum())}
	}
	m.SQLBytes, m.SQLSHA256 = sql.n, sql.sum()
	m.StoredBytes, m.StoredSHA256 = stored.n, stored.sum()
	if err := r.writeManifest(ctx, m); err != nil {
		return Summary{}, err
	}
	r.log.Info("completed an earlier unfinished backup", "key", m.Key)
	return m.Summary(true), nil
}

func (r *Runner) writeManifest(ctx context.Context, m *Manifest) error {
	m.StoredAt = r.cfg.Now().UTC()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return &InternalError{Err: err}
	}
	data = append(data, '\n')
	key := m.Key + ManifestSuffix
	_, err = r.store.Put(ctx, key, bytes.NewReader(data), store.PutOptions{ContentType: "application/json", Size: int64(len(data))})
	if errors.Is(err, store.ErrExists) {
		// A concurrent run of the same export got there first.
		other, rerr := ReadManifest(ctx, r.store, key)
		if rerr == nil && other.SQLSHA256 == m.SQLSHA256 {
			return nil
		}
		return &ConflictError{Key: key, Msg: "another manifest"}
	}
	if err != nil {
		return r.storeError("write manifest "+key, err)
	}
	return nil
}

func (r *Runner) storeError(op string, err error) error {
	if rs, ok := r.store.(Retryabler); ok && rs.IsRetryable(err) {
		return &StoreUnavailableError{Op: op, Err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("backup: %s: %w", op, err)
	}
	return &StoreFailedError{Op: op, Err: err}
}

// encode turns the SQL into the stored bytes: compressed, then encrypted to
// the age recipients when there are any.
func (r *Runner) encode(w io.Writer, sql io.Reader) error {
	if len(r.recipients) > 0 {
		aw, err := age.Encrypt(w, r.recipients...)
		if err != nil {
			return &InternalError{Err: fmt.Errorf("age: %w", err)}
		}
		if err := compressTo(aw, sql, r.cfg.Compression); err != nil {
			return err
		}
		return aw.Close()
	}
	return compressTo(w, sql, r.cfg.Compression)
}

func compressTo(w io.Writer, r io.Reader, compression string) error {
	if compression == CompressionNone {
		_, err := io.Copy(w, r)
		return err
	}
	return compress(w, r, compression)
}

// compressBuffer is the size of compress's read buffer and of its output
// buffer in front of w. With the 32 KiB of a plain io.Copy every compressed
// flush was a separate hand-over through the pipe to the uploader; 256 KiB
// cut the store step's CPU time with gzip by about a fifth (scripts/bench).
const compressBuffer = 256 << 10

// gzip is compressed in parallel blocks (klauspost/pgzip: one gzip member,
// each block primed with the previous block's last 32 KiB, so any gzip
// reader reads it and the output is within 0.5% of single-threaded gzip's).
// On one core, compression capped the store step at about 0.8x the speed of
// compression none; two 256 KiB blocks in flight lift it to line rate for
// about 13% more CPU and a few MiB of memory. Larger blocks only cost memory.
const (
	gzipBlockSize = 256 << 10
	gzipMaxBlocks = 4
)

// compress writes r to w compressed. gzip stays at the default level (6):
// level 1 is a third cheaper in CPU but stores 21% more bytes, kept for the
// whole retention period, and the store step reaches line rate without it.
// zstd keeps its defaults (level 3, asynchronous block encoding): half of
// gzip's output at about the same CPU.
func compress(w io.Writer, r io.Reader, compression string) error {
	bw := bufio.NewWriterSize(w, compressBuffer)
	var zw io.WriteCloser
	switch compression {
	case CompressionGzip:
		gw := pgzip.NewWriter(bw)
		if err := gw.SetConcurrency(gzipBlockSize, min(runtime.GOMAXPROCS(0), gzipMaxBlocks)); err != nil {
			return &InternalError{Err: err}
		}
		zw = gw
	case CompressionZstd:
		var err error
		if zw, err = zstd.NewWriter(bw); err != nil {
			return &InternalError{Err: err}
		}
	default:
		return &ConfigError{Msg: "unknown compression " + compression}
	}
	// Hide any ReaderFrom/WriterTo so the copy uses a buffer of this size.
	if _, err := io.CopyBuffer(struct{ io.Writer }{zw}, struct{ io.Reader }{r}, make([]byte, compressBuffer)); err != nil {
		zw.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func contentType(compression string) string {
	switch compression {
	case CompressionGzip:
		return "application/gzip"
	case CompressionZstd:
		return "application/zstd"
	}
	return "application/sql"
}

// hashCounter hashes and counts what is written to it.
type hashCounter struct {
	h        hash.Hash
	n        int64
	total    int64
	progress func(done, total int64)
}

func (c *hashCounter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	if c.progress != nil {
		c.progress(c.n, c.total)
	}
	return len(p), nil
}

func (c *hashCounter) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// firstErr remembers the first error other than EOF its reader returned, so
// the store step reports a failed download as such, whatever the uploader
// makes of it.
type firstErr struct {
	r   io.Reader
	err error
}

func (f *firstErr) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF && f.err == nil {
		f.err = err
	}
	return n, err
}
