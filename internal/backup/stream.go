package backup

import (
	"context"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

// Stream stores the SQL dump read from dump as the backup m describes (m.Key
// set; its encryption, sizes and hashes are filled in here) in one go:
// SHA-256 of the SQL → compression → encryption → upload with SHA-256 of the
// stored bytes, then the manifest beside it. It serves reads through the
// query API, which cannot be resumed (the database is read again instead);
// an export's dump goes through the resumable Store. sqlSize is the SQL's
// length if known (checked), else -1; onSQL, if set, sees the SQL bytes so
// far. A read error from dump aborts the upload (nothing under the key) and
// is returned as it is. m is read only after dump has returned EOF, so its
// producer may complete it until then.
func (r *Runner) Stream(ctx context.Context, m *Manifest, dump io.Reader, sqlSize int64, onSQL func(n int64)) (Summary, error) {
	key := m.Key
	// The caller found no manifest: a dump under the key is an unfinished
	// backup of the same bookmark. Settle it before anything is read (once
	// the pipeline runs, the dump's first bytes are gone into it).
	if _, err := r.store.Stat(ctx, key); err == nil {
		if err := r.replaceUnfinished(ctx, key); err != nil {
			return Summary{}, err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return Summary{}, storeError("look for an earlier backup "+key, err)
	}
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
	// A failed read is the root cause of the failed upload it feeds.
	if srcErr := wait(); srcErr != nil {
		return Summary{}, srcErr
	}
	switch {
	case errors.Is(putErr, store.ErrExists):
		// Another backup of the same bookmark got there meanwhile: the
		// next attempt finds its manifest.
		return Summary{}, &StoreUnavailableError{Op: "store " + key, Err: fmt.Errorf("another backup of the same bookmark stored it meanwhile: %w", putErr)}
	case putErr != nil:
		return Summary{}, storeError("upload "+key, putErr)
	}
	m.SQLBytes, m.SQLSHA256 = sql.N(), sql.Sum()
	m.StoredBytes, m.StoredSHA256 = stored.N(), stored.Sum()
	if sqlSize >= 0 && sql.N() != sqlSize {
		return Summary{}, &IntegrityError{Msg: fmt.Sprintf("dump of %s: stored %d bytes, %d announced", m.DatabaseName, sql.N(), sqlSize)}
	}
	if err := r.writeManifest(ctx, m); err != nil {
		return Summary{}, err
	}
	r.log.Info("backup stored", "database", m.DatabaseName, "key", key, "method", m.Method, "sql_bytes", m.SQLBytes, "stored_bytes", m.StoredBytes, "sql_sha256", m.SQLSHA256)
	return m.Summary(false), nil
}

// replaceUnfinished removes a dump without a manifest that Stream finds
// under its key, once it is older than orphanAge: an abandoned read, which
// nothing vouches for (a read is not resumed, and this one's bytes are not
// known before it is done). Younger, another backup may be finishing it:
// a StoreUnavailableError says to retry later.
func (r *Runner) replaceUnfinished(ctx context.Context, key string) error {
	obj, err := r.store.Stat(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil // gone meanwhile
	case err != nil:
		return storeError("look at the unfinished backup "+key, err)
	case r.cfg.Now().Sub(obj.Modified) < orphanAge:
		return &StoreUnavailableError{Op: "store " + key, Err: fmt.Errorf("an unfinished backup of the same bookmark, %s old, is under the key: another backup may be finishing it", r.cfg.Now().Sub(obj.Modified).Round(1e9))}
	}
	if err := r.store.Delete(ctx, key); err != nil {
		return storeError("replace the unfinished backup "+key, err)
	}
	r.log.Warn("replaced an unfinished backup that had no manifest", "key", key, "age", r.cfg.Now().Sub(obj.Modified).String())
	return nil
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
