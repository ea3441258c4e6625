package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/store"
)

// Store streams a completed export's dump into the store: download → SHA-256
// of the SQL → compression → encryption → multipart upload with SHA-256 of
// the stored bytes, then the manifest. Memory stays bounded by the part
// buffers. It is the one path for every dump, whatever its size:
//
//   - A dump that ends before the step must stop is stored and its Summary
//     returned (a small one in one PUT).
//   - When ctx has a deadline (a Lambda invocation), the step stops
//     StopMargin before it, saves a checkpoint in the bucket and returns
//     the Export to run it again with; that run goes on from the checkpoint
//     (the dump from the same offset, a new compression stream, the same
//     upload and equal parts) and so on until the end.
//   - An interrupted run (ctx cancelled, the download failed) saves a
//     checkpoint too before it returns its error; a rerun of the same
//     export goes on from it.
//
// If this export was stored before (same database and bookmark), Store
// writes nothing and reports the existing backup; a dump without its
// manifest is completed when it can be vouched for (see adopt).
func (r *Runner) Store(ctx context.Context, exp Export) (StoreResult, error) {
	if exp.Status != StatusComplete || exp.SignedURL == "" {
		return StoreResult{}, &ConfigError{Msg: fmt.Sprintf("store needs a complete export with its URL; got status %q", exp.Status)}
	}
	if r.mp == nil {
		return StoreResult{}, &ConfigError{Msg: fmt.Sprintf("destination %s cannot take uploads in parts", r.store)}
	}
	key, err := DumpKey(exp.DatabaseID, exp.Bookmark, r.cfg.Compression, len(r.recipients) > 0)
	if err != nil {
		return StoreResult{}, err
	}
	s := &storing{r: r, exp: exp, key: key}
	if ref := exp.StoreCheckpoint; ref != nil {
		// Step input: the key must name a checkpoint of this database, or a
		// crafted input could have any object deleted.
		if k, ok := ParseKey(ref.Key); !ok || !k.Checkpoint || k.DatabaseID != exp.DatabaseID {
			return StoreResult{}, &ConfigError{Msg: fmt.Sprintf("store_checkpoint.key %q is not a checkpoint of database %s", ref.Key, exp.DatabaseID)}
		}
		if len(ref.Notes) > 100 {
			return StoreResult{}, &ConfigError{Msg: "store_checkpoint has more than 100 notes"}
		}
		s.notes = append(s.notes, ref.Notes...)
		if ref.Key != CheckpointKey(key) {
			// A new export with a new bookmark (the URL of the old one
			// expired), or another configuration: the old upload is lost.
			s.discard(ctx, ref.Key, fmt.Sprintf("the database changed while its dump was being stored (%s, now bookmark %s): started over", strings.TrimSuffix(ref.Key, CheckpointSuffix), exp.Bookmark))
		} else {
			s.ref = ref
		}
	}
	return s.store(ctx)
}

// storing is one call of Store.
type storing struct {
	r     *Runner
	exp   Export
	key   string
	ref   *StoreCheckpoint // the workflow's, when it matches key
	notes []string
}

func (s *storing) note(msg string) {
	s.notes = append(s.notes, msg)
	s.r.log.Warn(msg, "database", s.exp.DatabaseName, "key", s.key)
}

func (s *storing) store(ctx context.Context) (StoreResult, error) {
	r := s.r
	if m, err := r.existing(ctx, s.exp); err != nil || m != nil {
		if err != nil {
			return StoreResult{}, err
		}
		r.log.Info("export already backed up", "database", s.exp.DatabaseName, "key", m.Key)
		s.dropCheckpoint(ctx, "")
		return s.done(m, true), nil
	}
	cp, err := readCheckpoint(ctx, r.store, CheckpointKey(s.key))
	var bad *BadCheckpointError
	if errors.As(err, &bad) {
		s.discard(ctx, CheckpointKey(s.key), bad.Error()+"; started over")
		cp, err = nil, nil
	}
	if err != nil {
		return StoreResult{}, err
	}
	if cp != nil && s.ref != nil && cp.Run != s.ref.Run {
		return StoreResult{}, &StoreUnavailableError{Op: "continue the upload of " + s.key, Err: fmt.Errorf("another backup of this export (run %s) has taken it over; it will store it", cp.Run)}
	}
	switch obj, err := r.store.Stat(ctx, s.key); {
	case err == nil:
		res, err := s.adopt(ctx, obj, cp)
		if !errors.Is(err, errStartOver) {
			return res, err
		}
		cp = nil
	case !errors.Is(err, store.ErrNotFound):
		return StoreResult{}, storeError("look for "+s.key, err)
	}
	if cp != nil && cp.Final != nil {
		return s.complete(ctx, cp)
	}
	if cp != nil {
		if why := s.resumable(cp); why != "" {
			s.discard(ctx, CheckpointKey(s.key), why+": started over")
			cp = nil
		}
	}
	for attempt := 0; ; attempt++ {
		res, err := s.stream(ctx, cp)
		if errors.Is(err, errDumpChanged) && cp != nil && attempt == 0 {
			s.discard(ctx, CheckpointKey(s.key), fmt.Sprintf("the dump behind this URL is not the one the interrupted upload began with (at byte %d of %d): started over", cp.SQLOffset, cp.SQLTotal))
			cp = nil
			continue
		}
		return res, err
	}
}

// resumable says why the upload in cp cannot go on under this
// configuration, or "".
func (s *storing) resumable(cp *checkpoint) string {
	switch {
	case !equalStrings(cp.Recipients, s.r.cfg.Recipients):
		return "the interrupted upload was encrypted to other recipients"
	case cp.Encrypted && s.r.cfg.Sealer == nil:
		return "the interrupted upload is encrypted and its state cannot be opened without the credentials"
	case cp.Encrypted:
		if _, err := s.r.cfg.Sealer.Open(cp.SealedAge); err != nil {
			return "the interrupted upload's encryption state was sealed with other credentials"
		}
	}
	return ""
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// stream runs one upload from cp (nil: from the start).
func (s *storing) stream(ctx context.Context, cp *checkpoint) (StoreResult, error) {
	r := s.r
	fresh := cp == nil
	if fresh {
		cp = s.newCheckpoint()
	}
	if s.ref != nil {
		cp.URLOffset = s.ref.URLOffset
		if !fresh && s.ref.URLOffset == cp.SQLOffset && cp.SQLOffset > 0 {
			s.note(fmt.Sprintf("continued the upload at byte %d with the URL of a new export of the same bookmark", cp.SQLOffset))
		}
	}
	cp.Invocations++
	cp.Notes = s.notes
	if r.cfg.Sealer != nil {
		cp.SealedURL = r.cfg.Sealer.Seal(s.exp.SignedURL)
	}
	u := &upload{r: r, exp: s.exp, key: s.key, cp: cp}
	if err := u.open(ctx, fresh); err != nil {
		return StoreResult{}, err
	}
	if !fresh {
		r.log.Info("continuing an interrupted upload", "database", s.exp.DatabaseName, "key", s.key, "sql_offset", cp.SQLOffset, "sql_total", cp.SQLTotal, "parts", len(cp.Parts), "invocation", cp.Invocations)
	}
	res, next, err := u.run(ctx)
	switch {
	case err == nil && next != nil:
		return s.next(next), nil
	case err == nil:
		out, err := s.finished(ctx, res, cp.Invocations)
		if err != nil && ctx.Err() != nil && u.cp.Final != nil {
			// The deadline cut the manifest: the next invocation vouches
			// for the completed upload with the final checkpoint.
			return s.next(u.cp.ref()), nil
		}
		return out, err
	case errors.Is(err, store.ErrExists):
		if u.sink.uploadID != "" {
			s.abort(ctx, u.sink.uploadID)
		}
		return s.lost(ctx, res, cp.Run)
	case errors.Is(err, store.ErrUploadNotFound):
		// Expired (R2 aborts uploads after 7 days) or aborted by someone.
		s.discard(ctx, CheckpointKey(s.key), "the interrupted upload is gone from the bucket: the next attempt starts over")
		return StoreResult{}, &StoreUnavailableError{Op: "continue the upload of " + s.key, Err: err}
	}
	return StoreResult{}, err
}

// next is the Export to run the store step again with.
func (s *storing) next(ref *StoreCheckpoint) StoreResult {
	out := s.exp
	out.StoreCheckpoint = ref
	return StoreResult{Next: &out}
}

func (s *storing) newCheckpoint() *checkpoint {
	var run [8]byte
	_, _ = rand.Read(run[:])
	return &checkpoint{
		Run: hex.EncodeToString(run[:]), DatabaseID: s.exp.DatabaseID, DatabaseName: s.exp.DatabaseName,
		Bookmark: s.exp.Bookmark, Key: s.key, Compression: s.r.cfg.Compression, Encrypted: len(s.r.recipients) > 0,
		Recipients: s.r.cfg.Recipients, ExportStartedAt: s.exp.StartedAt, ExportCompletedAt: s.exp.CompletedAt,
		SQLTotal: -1,
	}
}

// finished writes the manifest of a completed upload and drops its
// checkpoint.
func (s *storing) finished(ctx context.Context, res *final, invocations int) (StoreResult, error) {
	out, err := s.vouch(ctx, res, false)
	if err != nil {
		return StoreResult{}, err
	}
	s.r.log.Info("backup stored", "database", s.exp.DatabaseName, "key", s.key, "sql_bytes", res.SQLBytes, "stored_bytes", res.StoredBytes, "sql_sha256", res.SQLSHA256, "invocations", invocations)
	out.Summary.Invocations = invocations
	return out, nil
}

func (s *storing) done(m *Manifest, already bool) StoreResult {
	sum := m.Summary(already)
	sum.Notes = s.notes
	return StoreResult{Summary: &sum}
}

func (s *storing) manifest() *Manifest {
	exp := s.exp
	m := &Manifest{
		Format: ManifestFormat, Tool: "d1backup", ToolVersion: s.r.cfg.ToolVersion,
		DatabaseID: exp.DatabaseID, DatabaseName: exp.DatabaseName, Bookmark: exp.Bookmark,
		Key: s.key, ExportStartedAt: exp.StartedAt, Compression: s.r.cfg.Compression, Method: MethodExport,
	}
	if len(s.r.recipients) > 0 {
		m.Encryption = &Encryption{Type: "age", Recipients: s.r.cfg.Recipients}
	}
	if exp.CompletedAt != nil {
		m.ExportCompletedAt = *exp.CompletedAt
		m.BlockedSeconds = exp.CompletedAt.Sub(exp.StartedAt).Seconds()
	}
	return m
}

// discard aborts the upload of the checkpoint under key and deletes it,
// saying why. Failures only leave garbage for retention, so they are
// logged, not returned.
func (s *storing) discard(ctx context.Context, key, why string) {
	s.note(why)
	if dump, id := uploadOf(ctx, s.r.store, key); id != "" {
		if err := s.r.mp.AbortUpload(ctx, dump, id); err != nil {
			s.r.log.Warn("could not abort an interrupted upload; retention will", "key", dump, "cause", err)
		}
	}
	if err := s.r.store.Delete(ctx, key); err != nil {
		s.r.log.Warn("could not delete a checkpoint; retention will", "key", key, "cause", err)
	}
}

// dropCheckpoint deletes this key's checkpoint once the backup is complete
// (only run's, if run is set).
func (s *storing) dropCheckpoint(ctx context.Context, run string) {
	key := CheckpointKey(s.key)
	if run != "" {
		if cp, err := readCheckpoint(ctx, s.r.store, key); err != nil || cp == nil || cp.Run != run {
			return
		}
	}
	if err := s.r.store.Delete(ctx, key); err != nil {
		s.r.log.Warn("could not delete the checkpoint of a stored backup; retention will", "key", key, "cause", err)
	}
}

func (s *storing) abort(ctx context.Context, id string) {
	if err := s.r.mp.AbortUpload(context.WithoutCancel(ctx), s.key, id); err != nil {
		s.r.log.Warn("could not abort an upload; retention will", "key", s.key, "cause", err)
	}
}

// existing returns the manifest of an earlier backup of the same export.
func (r *Runner) existing(ctx context.Context, exp Export) (*Manifest, error) {
	objs, err := r.store.List(ctx, BookmarkPrefix(exp.DatabaseID, exp.Bookmark))
	if err != nil {
		return nil, storeError("list existing backups", err)
	}
	for _, o := range objs {
		if k, ok := ParseKey(o.Key); ok && k.Manifest && k.Bookmark == exp.Bookmark {
			m, err := ReadManifest(ctx, r.store, o.Key)
			if err != nil {
				return nil, manifestError("read existing manifest", err)
			}
			return m, nil
		}
	}
	return nil, nil
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

// copyBuffer is the read size of the download.
const copyBuffer = 256 << 10

// StoreAll runs the store step until the backup is stored, the way the
// workflow loops it: each run with a deadline invocation away (none if 0),
// each going on from the Export the previous one returned, a retryable
// failure retried (at most MaxRetries times in a row) as the workflow's
// Retry does. It returns the Summary and how many runs it took.
func (r *Runner) StoreAll(ctx context.Context, exp Export, invocation time.Duration) (Summary, int, error) {
	failures := 0
	for n := 1; ; n++ {
		ictx, cancel := ctx, context.CancelFunc(func() {})
		if invocation > 0 {
			ictx, cancel = context.WithTimeout(ctx, invocation)
		}
		res, err := r.Store(ictx, exp)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && KindOf(err) == Retryable && failures < r.cfg.MaxRetries:
			failures++
			r.log.Warn("store step failed; retrying", "database", label(exp), "attempt", failures+1, "cause", err)
			if serr := r.cfg.Sleep(ctx, backoff(failures, err)); serr != nil {
				return Summary{}, n, err
			}
		case err != nil:
			return Summary{}, n, err
		case res.Summary != nil:
			return *res.Summary, n, nil
		default:
			exp, failures = *res.Next, 0
		}
	}
}
