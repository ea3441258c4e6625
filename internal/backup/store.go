package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

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
		Key: key, ExportStartedAt: exp.StartedAt, Compression: r.cfg.Compression, Method: MethodExport,
	}
	if exp.CompletedAt != nil {
		m.ExportCompletedAt = *exp.CompletedAt
		m.BlockedSeconds = exp.CompletedAt.Sub(exp.StartedAt).Seconds()
	}
	var onSQL func(int64)
	if r.cfg.Progress != nil {
		onSQL = func(n int64) { r.cfg.Progress(n, dl.Size) }
	}
	return r.Stream(ctx, m, dl.Body, dl.Size, onSQL)
}

// Stream stores the SQL dump read from dump as the backup m describes (m.Key
// set; its encryption, sizes and hashes are filled in here): SHA-256 of the
// SQL → compression → encryption → upload with SHA-256 of the stored bytes,
// then the manifest beside it. sqlSize is the SQL's length if known (checked),
// else -1; onSQL, if set, sees the SQL bytes so far. A read error from dump
// aborts the upload (nothing under the key) and is returned as it is.
// m is read only after dump has returned EOF, so its producer may complete
// it until then.
func (r *Runner) Stream(ctx context.Context, m *Manifest, dump io.Reader, sqlSize int64, onSQL func(n int64)) (Summary, error) {
	key := m.Key
	if len(r.recipients) > 0 {
		m.Encryption = &Encryption{Type: "age", Recipients: r.cfg.Recipients}
	}
	sql := stream.NewDigest()
	if onSQL != nil {
		sql.OnWrite = onSQL
	}
	src := &firstErr{r: io.TeeReader(dump, sql)}
	var (
		stored           = sql
		body   io.Reader = src
		size             = sqlSize
		wait             = func() error { return src.err }
	)
	if r.codec.Name != codec.None || len(r.recipients) > 0 {
		stored, size = stream.NewDigest(), -1
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

	_, putErr := r.store.Put(ctx, key, body, store.PutOptions{ContentType: r.codec.ContentType, Size: size})
	// A failed download is the root cause of the failed upload it feeds.
	if srcErr := wait(); srcErr != nil {
		return Summary{}, srcErr
	}
	if putErr != nil {
		if errors.Is(putErr, store.ErrExists) {
			return r.adoptExisting(ctx, m, sql, stored)
		}
		return Summary{}, storeError("upload "+key, putErr)
	}
	m.SQLBytes, m.SQLSHA256 = sql.N(), sql.Sum()
	m.StoredBytes, m.StoredSHA256 = stored.N(), stored.Sum()
	if sqlSize >= 0 && sql.N() != sqlSize {
		return Summary{}, &IntegrityError{Msg: fmt.Sprintf("dump of %s: stored %d bytes, D1 announced %d", m.DatabaseName, sql.N(), sqlSize)}
	}
	if err := r.writeManifest(ctx, m); err != nil {
		return Summary{}, err
	}
	r.log.Info("backup stored", "database", m.DatabaseName, "key", key, "method", m.Method, "sql_bytes", m.SQLBytes, "stored_bytes", m.StoredBytes, "sql_sha256", m.SQLSHA256)
	return m.Summary(false), nil
}

// existing returns the manifest of an earlier backup of the same export.
func (r *Runner) existing(ctx context.Context, exp Export) (*Manifest, error) {
	objs, err := r.store.List(ctx, BookmarkPrefix(exp.DatabaseID, exp.Bookmark))
	if err != nil {
		return nil, storeError("list existing backups", err)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ManifestSuffix) {
			m, err := ReadManifest(ctx, r.store, o.Key)
			if err != nil {
				return nil, storeError("read existing manifest", err)
			}
			return m, nil
		}
	}
	return nil, nil
}

// adoptExisting handles a dump already under the key with no manifest: an
// earlier run stopped between the two writes. If its bytes are the ones just
// streamed, the backup is completed with a manifest; otherwise it conflicts.
func (r *Runner) adoptExisting(ctx context.Context, m *Manifest, sql, stored *stream.Digest) (Summary, error) {
	rc, err := r.store.Get(ctx, m.Key)
	if err != nil {
		return Summary{}, storeError("read existing "+m.Key, err)
	}
	defer rc.Close()
	h := stream.NewDigest()
	if _, err := io.Copy(h, rc); err != nil {
		return Summary{}, storeError("read existing "+m.Key, err)
	}
	if h.Sum() != stored.Sum() || h.N() != stored.N() {
		return Summary{}, &ConflictError{Key: m.Key, Msg: fmt.Sprintf("%d bytes with SHA-256 %s, this export gives %d bytes with %s", h.N(), h.Sum(), stored.N(), stored.Sum())}
	}
	m.SQLBytes, m.SQLSHA256 = sql.N(), sql.Sum()
	m.StoredBytes, m.StoredSHA256 = stored.N(), stored.Sum()
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
		return storeError("write manifest "+key, err)
	}
	return nil
}

// storeError classifies a store failure by the store's own verdict.
func storeError(op string, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("backup: %s: %w", op, err)
	case store.IsTransient(err), errors.Is(err, context.DeadlineExceeded):
		return &StoreUnavailableError{Op: op, Err: err}
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
		if err := compressTo(aw, sql, r.codec); err != nil {
			return err
		}
		return aw.Close()
	}
	return compressTo(w, sql, r.codec)
}

// copyBuffer is the read size of the copy into the compressor.
const copyBuffer = 256 << 10

func compressTo(w io.Writer, r io.Reader, c *codec.Codec) error {
	zw, err := c.NewWriter(w)
	if err != nil {
		return &InternalError{Err: fmt.Errorf("%s: %w", c.Name, err)}
	}
	// Hide any ReaderFrom/WriterTo so the copy uses a buffer of this size.
	if _, err := io.CopyBuffer(struct{ io.Writer }{zw}, struct{ io.Reader }{r}, make([]byte, copyBuffer)); err != nil {
		zw.Close()
		return err
	}
	return zw.Close()
}

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
