package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

// errStartOver: what was under the key was an unfinished backup that
// cannot be vouched for, and it is gone: store this export afresh.
var errStartOver = errors.New("start over")

// orphanAge is how old an encrypted dump without a manifest must be to be
// taken for an abandoned backup and replaced. Younger, a concurrent backup
// may still be writing its manifest (with its retries).
const orphanAge = time.Hour

// completingGrace is how long after its last part an upload that is
// neither in progress nor complete may still be completing.
const completingGrace = 15 * time.Minute

// manifestPoll is how often a store step waiting for a concurrent backup's
// manifest looks for it.
const manifestPoll = 250 * time.Millisecond

// adopt decides about a dump already under the key without its manifest:
// an earlier run stopped between the upload and the manifest, or a
// concurrent run is finishing. A manifest never vouches for what was not
// verified:
//   - with the final checkpoint of the run that uploaded it, the object is
//     vouched for by its stored SHA-256 matching what that run streamed;
//   - a concurrent backup's manifest appearing within ManifestWait settles it;
//   - an unencrypted dump is read back, and its SQL (decompressed: the
//     compressed bytes may differ between versions, the SQL does not) must
//     hash as this export's dump does, which is downloaded again;
//   - an encrypted dump cannot be read without the identity: younger than
//     orphanAge it may be a concurrent backup's (retry later); older, it is
//     an abandoned backup and is replaced (errStartOver).
func (s *storing) adopt(ctx context.Context, obj store.Object, cp *checkpoint) (StoreResult, error) {
	if res, ok, err := s.adoptFinal(ctx, obj, cp); err != nil || ok {
		return res, err
	}
	if m, err := s.waitManifest(ctx); err != nil || m != nil {
		if err != nil {
			return StoreResult{}, err
		}
		return s.done(m, true), nil
	}
	if len(s.r.recipients) > 0 {
		age := s.r.cfg.Now().Sub(obj.Modified)
		if age < orphanAge {
			return StoreResult{}, &StoreUnavailableError{Op: "store " + s.key, Err: fmt.Errorf("an encrypted dump without a manifest, %s old, is under its key: another backup may still be finishing it (one older than %s is replaced)", age.Round(time.Second), orphanAge)}
		}
		if err := s.r.store.Delete(ctx, s.key); err != nil {
			return StoreResult{}, storeError("delete the unfinished backup "+s.key, err)
		}
		s.note(fmt.Sprintf("replaced an encrypted dump without a manifest from %s: an unfinished backup, which cannot be verified without the identity", obj.Modified.UTC().Format(time.RFC3339)))
		if cp != nil {
			s.discard(ctx, CheckpointKey(s.key), "dropped the checkpoint of the unfinished backup")
		}
		return StoreResult{}, errStartOver
	}
	got, err := s.hashStoredSQL(ctx)
	if err != nil {
		return StoreResult{}, err
	}
	sqlN, sqlSum, err := s.hashDump(ctx)
	if err != nil {
		return StoreResult{}, err
	}
	if sqlN != got.SQLBytes || sqlSum != got.SQLSHA256 {
		return StoreResult{}, &ConflictError{Key: s.key, Msg: fmt.Sprintf("no manifest; its SQL is %d bytes with SHA-256 %s, this export's is %d bytes with %s", got.SQLBytes, got.SQLSHA256, sqlN, sqlSum)}
	}
	s.note("completed an earlier unfinished backup: the dump under its key holds this export's SQL")
	return s.vouch(ctx, got, true)
}

// adoptFinal vouches for obj if it is what cp's final checkpoint says its
// upload completed: this run's own upload, cut by its deadline after
// completing, or an earlier run's.
func (s *storing) adoptFinal(ctx context.Context, obj store.Object, cp *checkpoint) (StoreResult, bool, error) {
	if cp == nil || cp.Final == nil || cp.Final.StoredBytes != obj.Size {
		return StoreResult{}, false, nil
	}
	ok, err := s.isFinal(ctx, obj, cp)
	if err != nil || !ok {
		return StoreResult{}, false, err
	}
	s.note("completed an interrupted backup: the dump under its key is the one its upload streamed")
	res, err := s.vouch(ctx, cp.Final, s.ref == nil || s.ref.Run != cp.Run)
	if err == nil {
		res.Summary.Invocations = cp.Invocations + 1
	}
	return res, true, err
}

// isFinal reports whether obj is the object cp's upload completed: the
// same parts by their ETags (S3's multipart ETag, no read needed), or else
// the same stored SHA-256.
func (s *storing) isFinal(ctx context.Context, obj store.Object, cp *checkpoint) (bool, error) {
	if want, ok := store.MultipartETag(cp.Parts); ok && obj.ETag != "" {
		if obj.ETag == want {
			return true, nil
		}
	}
	n, sum, err := s.hashStored(ctx)
	if err != nil {
		return false, err
	}
	return n == cp.Final.StoredBytes && sum == cp.Final.StoredSHA256, nil
}

// complete finishes an upload whose every part was uploaded (its final
// checkpoint) but which was not completed: a crash, or a failed completion.
func (s *storing) complete(ctx context.Context, cp *checkpoint) (StoreResult, error) {
	_, err := s.r.mp.CompleteUpload(ctx, s.key, cp.UploadID, cp.Parts)
	if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrUploadNotFound) {
		// Completed meanwhile by an earlier attempt that the deadline cut
		// (the server went on with it), or by another backup.
		if obj, serr := s.r.store.Stat(ctx, s.key); serr == nil {
			if res, ok, err := s.adoptFinal(ctx, obj, cp); err != nil || ok {
				return res, err
			}
		}
	}
	switch {
	case errors.Is(err, store.ErrExists):
		s.abort(ctx, cp.UploadID)
		return s.lost(ctx, cp.Final, cp.Run)
	case errors.Is(err, store.ErrUploadNotFound):
		// A server may take a while to complete an upload a cut request
		// asked for, showing neither the upload nor the object meanwhile.
		if age := s.r.cfg.Now().Sub(cp.UpdatedAt); age < completingGrace {
			return StoreResult{}, &StoreUnavailableError{Op: "complete the upload of " + s.key, Err: fmt.Errorf("neither the upload nor its object is there %s after its last part: it may still be completing", age.Round(time.Second))}
		}
		s.discard(ctx, CheckpointKey(s.key), "the interrupted upload is gone from the bucket: started over")
		return s.stream(ctx, nil)
	case err != nil:
		return StoreResult{}, storeError("complete the upload of "+s.key, err)
	}
	s.r.log.Info("completed an upload whose parts were all stored", "database", s.exp.DatabaseName, "key", s.key)
	res, err := s.vouch(ctx, cp.Final, false)
	if err == nil {
		res.Summary.Invocations = cp.Invocations + 1
	}
	return res, err
}

// lost handles a completion refused because the key was taken meanwhile:
// a concurrent backup of the same export won. Its manifest must describe
// the same SQL; without one, an unencrypted object is read back.
func (s *storing) lost(ctx context.Context, res *final, run string) (StoreResult, error) {
	s.dropCheckpoint(ctx, run)
	m, err := s.waitManifest(ctx)
	switch {
	case err != nil:
		return StoreResult{}, err
	case m != nil && m.SQLSHA256 == res.SQLSHA256 && m.SQLBytes == res.SQLBytes:
		s.note("another backup of this export stored it first")
		return s.done(m, true), nil
	case m != nil:
		return StoreResult{}, &ConflictError{Key: s.key, Msg: fmt.Sprintf("its manifest gives SQL SHA-256 %s, this export's is %s", m.SQLSHA256, res.SQLSHA256)}
	case len(s.r.recipients) > 0:
		return StoreResult{}, &StoreUnavailableError{Op: "store " + s.key, Err: errors.New("another backup stored this export first and has not written its manifest yet")}
	}
	got, err := s.hashStoredSQL(ctx)
	if err != nil {
		return StoreResult{}, err
	}
	if got.SQLSHA256 != res.SQLSHA256 || got.SQLBytes != res.SQLBytes {
		return StoreResult{}, &ConflictError{Key: s.key, Msg: fmt.Sprintf("no manifest; its SQL has SHA-256 %s, this export's %s", got.SQLSHA256, res.SQLSHA256)}
	}
	s.note("another backup of this export stored it first; wrote its manifest")
	return s.vouch(ctx, got, true)
}

// vouch writes the manifest of the dump under the key, which f describes,
// and drops the checkpoint.
func (s *storing) vouch(ctx context.Context, f *final, already bool) (StoreResult, error) {
	m := s.manifest()
	m.SQLBytes, m.SQLSHA256 = f.SQLBytes, f.SQLSHA256
	m.StoredBytes, m.StoredSHA256 = f.StoredBytes, f.StoredSHA256
	if err := s.r.writeManifest(ctx, m); err != nil {
		return StoreResult{}, err
	}
	s.dropCheckpoint(ctx, "")
	return s.done(m, already), nil
}

// waitManifest looks for this export's manifest until ManifestWait passes.
func (s *storing) waitManifest(ctx context.Context) (*Manifest, error) {
	for waited := time.Duration(0); ; waited += manifestPoll {
		m, err := s.r.existing(ctx, s.exp)
		if err != nil || m != nil || waited >= s.r.cfg.ManifestWait {
			return m, err
		}
		if err := s.r.cfg.Sleep(ctx, manifestPoll); err != nil {
			return nil, err
		}
	}
}

// hashStored reads the object under the key and returns its size and
// SHA-256.
func (s *storing) hashStored(ctx context.Context) (int64, string, error) {
	rc, err := s.r.store.Get(ctx, s.key)
	if err != nil {
		return 0, "", storeError("hash "+s.key, err)
	}
	defer rc.Close()
	d := stream.NewDigest()
	if _, err := io.Copy(d, rc); err != nil {
		return 0, "", storeError("hash "+s.key, err)
	}
	return d.N(), d.Sum(), nil
}

// hashStoredSQL reads the (unencrypted) object under the key and hashes it
// and the SQL it decompresses to. An object that does not decompress is
// not a dump of this export: a conflict.
func (s *storing) hashStoredSQL(ctx context.Context) (*final, error) {
	rc, err := s.r.store.Get(ctx, s.key)
	if err != nil {
		return nil, storeError("read back "+s.key, err)
	}
	defer rc.Close()
	stored, sql := stream.NewDigest(), stream.NewDigest()
	src := &firstErr{r: io.TeeReader(rc, stored)}
	zr, err := s.r.codec.NewReader(src)
	if err == nil {
		_, err = io.Copy(sql, zr)
		zr.Close()
	}
	if err == nil {
		_, err = io.Copy(io.Discard, src) // anything after the last stream
	}
	switch {
	case src.err != nil:
		return nil, storeError("read back "+s.key, src.err)
	case err != nil:
		return nil, &ConflictError{Key: s.key, Msg: fmt.Sprintf("no manifest, and it does not read as %s: %v", s.r.codec.Name, err)}
	}
	return &final{SQLBytes: sql.N(), SQLSHA256: sql.Sum(), StoredBytes: stored.N(), StoredSHA256: stored.Sum()}, nil
}

// hashDump downloads this export's dump and hashes it.
func (s *storing) hashDump(ctx context.Context) (int64, string, error) {
	dl, err := s.r.d1.Download(ctx, s.exp.SignedURL, 0)
	if err != nil {
		return 0, "", err
	}
	defer dl.Body.Close()
	d := stream.NewDigest()
	if _, err := io.Copy(d, dl.Body); err != nil {
		return 0, "", err
	}
	return d.N(), d.Sum(), nil
}

// firstErr remembers the first error other than EOF its reader returned,
// so that a failed read (of the store, of a dump) is told from what the
// bytes' consumer makes of it.
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
