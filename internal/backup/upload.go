package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

// upload is one store step's work on one dump: it streams the download,
// from where the checkpoint left off, through the SQL hash, a new
// compression stream and the age stream into the part sink, until the dump
// ends or it must stop. At a stop it cuts the stream (the compression
// stream ends, the tail and every hash state are saved) and writes a
// checkpoint; the next upload of the same dump goes on from there, and the
// object it completes is byte for byte what one uninterrupted upload with
// cuts at the same offsets would have made.
type upload struct {
	r    *Runner
	exp  Export
	key  string
	cp   *checkpoint // the header of the next checkpoint; the last one saved
	dl   *d1.Download
	sql  *stream.Digest
	sink *partSink
	enc  *ageStream
	zw   io.WriteCloser
	win  ring
	// offset is the SQL bytes read so far (the dump's, not the body's).
	offset int64

	cpMu   sync.Mutex // one checkpoint write at a time
	cpWG   sync.WaitGroup
	cpBusy atomic.Bool
}

// errDumpChanged: the dump behind the URL is not the one the checkpoint's
// upload began with (another size, other bytes before the offset).
var errDumpChanged = errors.New("the dump differs from the one the interrupted upload began with")

// stop reasons.
const (
	stopDeadline = "the invocation's deadline is near"
	stopCanceled = "interrupted"
)

// open starts the download where cp left off (a little before, to check
// the overlap) and prepares the stream. cp is the loaded checkpoint, or a
// fresh header.
func (u *upload) open(ctx context.Context, fresh bool) error {
	from := u.cp.SQLOffset - u.cp.OverlapBytes
	dl, err := u.r.d1.Download(ctx, u.exp.SignedURL, from)
	var re *d1.RangeError
	if errors.As(err, &re) {
		return errDumpChanged
	}
	if err != nil {
		return err
	}
	u.dl = dl
	if dl.RangeIgnored {
		u.r.log.Warn("the dump's server ignored the byte range; skipped the stored bytes instead", "database", u.exp.DatabaseName, "bytes_skipped", from)
	}
	if fresh {
		u.cp.SQLTotal = dl.Total
		u.cp.PartSize = u.r.partSizeFor(dl.Total)
	} else if dl.Total != u.cp.SQLTotal {
		u.close()
		return errDumpChanged
	}
	if u.cp.OverlapBytes > 0 {
		over := make([]byte, u.cp.OverlapBytes)
		if _, err := io.ReadFull(dl.Body, over); err != nil {
			u.close()
			return err
		}
		if sum := sha256.Sum256(over); hex.EncodeToString(sum[:]) != u.cp.OverlapSHA256 {
			u.close()
			return errDumpChanged
		}
		u.win.Write(over)
		u.win.seen = u.cp.SQLOffset
	}
	u.offset = u.cp.SQLOffset
	return u.prepare(ctx, fresh)
}

// prepare builds the digests, the sink, the age stream and a new
// compression stream from the checkpoint.
func (u *upload) prepare(ctx context.Context, fresh bool) error {
	var err error
	shared := u.r.codec.Name == codec.None && len(u.r.recipients) == 0
	stored := stream.NewDigest()
	if fresh {
		u.sql = stream.NewDigest()
	} else {
		if u.sql, err = stream.ResumeDigest(u.cp.SQLState, u.cp.SQLOffset); err != nil {
			return &InternalError{Err: err}
		}
		if stored, err = stream.ResumeDigest(u.cp.StoredState, u.cp.StoredBytes); err != nil {
			return &InternalError{Err: err}
		}
	}
	if shared {
		// The stored bytes are the SQL: hash them once, in the sink.
		u.sql = stored
	}
	opts := store.UploadOptions{ContentType: u.r.codec.ContentType, PartSize: u.cp.PartSize}
	// The sink's uploads outlive a cancelled ctx long enough to save a
	// checkpoint (see suspend); finish and stop release them.
	from := u.cp
	if fresh {
		from = nil
	}
	u.sink = newPartSink(context.WithoutCancel(ctx), u.r.store, u.r.mp, u.key, opts, u.r.cfg.PartConcurrency, from, stored)
	var dst io.Writer = u.sink
	switch {
	case len(u.r.recipients) > 0 && fresh:
		if u.enc, err = newAgeStream(u.sink, u.r.recipients); err != nil {
			return err
		}
		dst = u.enc
	case len(u.r.recipients) > 0:
		state, err := u.r.cfg.Sealer.Open(u.cp.SealedAge)
		if err != nil {
			return &InternalError{Err: fmt.Errorf("open the encryption state of %s: %w", u.cp.Key, err)}
		}
		if u.enc, err = resumeAgeState(u.sink, []byte(state)); err != nil {
			return &InternalError{Err: err}
		}
		dst = u.enc
	}
	if u.zw, err = u.r.codec.NewWriter(dst); err != nil {
		return &InternalError{Err: fmt.Errorf("%s: %w", u.r.codec.Name, err)}
	}
	return nil
}

func (u *upload) close() {
	if u.dl != nil {
		u.dl.Body.Close()
	}
}

// run streams until the dump ends (the result) or a stop (a checkpoint,
// returned as the ref). A failed download is checkpointed too, then
// returned, so the retry goes on from there.
func (u *upload) run(ctx context.Context) (*final, *StoreCheckpoint, error) {
	defer u.close()
	var stopping atomic.Bool
	stopAt, hasDeadline := u.r.stopTime(ctx)
	if hasDeadline {
		t := time.AfterFunc(time.Until(stopAt), func() { stopping.Store(true); u.dl.Body.Close() })
		defer t.Stop()
	}
	every := u.r.cfg.CheckpointInterval
	next := time.Now().Add(every)
	buf := make([]byte, copyBuffer)
	// Stored as it is (no compression, no encryption), the SQL is read
	// straight into the part being filled and hashed there once.
	direct := u.sql == u.sink.digest && u.r.codec.Name == codec.None
	for {
		if stopping.Load() {
			return u.suspend(ctx, stopDeadline, nil)
		}
		if ctx.Err() != nil {
			return u.suspend(ctx, stopCanceled, ctx.Err())
		}
		dst := buf
		if direct {
			dst = u.sink.window(copyBuffer)
		}
		// Whole buffers (TLS hands out 16 KiB records): fewer, larger
		// writes into the compressor and the overlap window.
		n, err := io.ReadFull(u.dl.Body, dst)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if n > 0 {
			u.win.Write(dst[:n])
			var werr error
			if direct {
				werr = u.sink.commit(n)
			} else {
				u.sql.Write(dst[:n])
				_, werr = u.zw.Write(dst[:n])
			}
			if werr != nil {
				return nil, nil, u.fail(werr)
			}
			u.offset += int64(n)
			if u.r.cfg.Progress != nil {
				u.r.cfg.Progress(u.offset, u.cp.SQLTotal)
			}
		}
		switch {
		case err == io.EOF:
			return u.finish(ctx, hasDeadline && time.Now().After(stopAt))
		case err != nil && stopping.Load():
			return u.suspend(ctx, stopDeadline, nil)
		case err != nil && ctx.Err() != nil:
			return u.suspend(ctx, stopCanceled, ctx.Err())
		case err != nil:
			// A failed download: keep what is uploaded, then report it.
			_, _, serr := u.suspend(ctx, "the download failed", err)
			return nil, nil, serr
		}
		if every > 0 && time.Now().After(next) && !u.cpBusy.Load() {
			if err := u.periodic(ctx); err != nil {
				return nil, nil, u.fail(err)
			}
			next = time.Now().Add(every)
		}
	}
}

// fail ends the upload after an error; parts in flight are cancelled. The
// last checkpoint stays valid (its parts are never uploaded again).
func (u *upload) fail(err error) error {
	u.sink.fail(err)
	if serr := u.sink.stop(); serr != nil && !errors.Is(serr, err) {
		// A failed part is the root cause of the failed write it stopped.
		err = serr
	}
	u.cpWG.Wait()
	u.abandon()
	return err
}

// abandon aborts an upload this run started that no saved checkpoint
// refers to: nothing could ever continue it.
func (u *upload) abandon() {
	if id := u.sink.uploadID; id != "" && u.sink.created && u.cp.UploadID != id {
		ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
		defer cancel()
		if err := u.r.mp.AbortUpload(ctx, u.key, id); err != nil {
			u.r.log.Warn("could not abort a failed upload; retention will", "key", u.key, "cause", err)
		}
	}
}

// abortTimeout bounds the clean-up of a failed upload, which runs even
// when the caller's context has ended.
const abortTimeout = 30 * time.Second

// cut ends the compression stream at the current offset and snapshots
// everything a checkpoint holds; parts up to n may still be in flight.
func (u *upload) cut() (c *checkpoint, n int, err error) {
	if err := u.zw.Close(); err != nil {
		return nil, 0, err
	}
	sc, err := u.sink.cut()
	if err != nil {
		return nil, 0, err
	}
	sqlState, err := u.sql.MarshalBinary()
	if err != nil {
		return nil, 0, &InternalError{Err: err}
	}
	next := *u.cp
	next.Parts = nil
	next.UploadID = u.sink.uploadID
	next.tail = sc.tail
	next.StoredBytes, next.StoredState = sc.stored, sc.state
	next.SQLOffset, next.SQLState = u.offset, sqlState
	next.OverlapBytes, next.OverlapSHA256 = u.win.sum()
	next.Segments++
	next.UpdatedAt = u.r.cfg.Now().UTC()
	if u.enc != nil {
		if u.r.cfg.Sealer == nil {
			return nil, 0, errNoSealer
		}
		next.SealedAge = u.r.cfg.Sealer.Seal(string(u.enc.state()))
	}
	return &next, sc.parts, nil
}

// errNoSealer: nothing to seal an encrypted upload's state with, so it
// cannot be continued elsewhere.
var errNoSealer = errors.New("no key to seal the encryption state with (the API token is not set)")

// save waits for parts 1..n, then writes c as the checkpoint.
func (u *upload) save(ctx context.Context, c *checkpoint, n int) error {
	u.cpMu.Lock()
	defer u.cpMu.Unlock()
	parts, err := u.sink.uploaded(n)
	if err != nil {
		return err
	}
	c.Parts = parts
	if err := writeCheckpoint(ctx, u.r.store, c); err != nil {
		return err
	}
	u.cp = c
	return nil
}

// periodic cuts the stream and saves a checkpoint in the background while
// the stream goes on in a new compression stream: a crash (or a Lambda
// killed at its timeout) then loses at most one interval.
func (u *upload) periodic(ctx context.Context) error {
	c, n, err := u.cut()
	if errors.Is(err, errNoSealer) {
		u.r.cfg.CheckpointInterval = 0 // an unsealable upload is never saved
		return u.reopen()
	}
	if err != nil {
		return err
	}
	if err := u.reopen(); err != nil {
		return err
	}
	u.cpBusy.Store(true)
	u.cpWG.Go(func() {
		defer u.cpBusy.Store(false)
		if err := u.save(ctx, c, n); err != nil {
			u.r.log.Warn("periodic checkpoint failed; the previous one stays", "key", CheckpointKey(u.key), "cause", err)
		}
	})
	return nil
}

// reopen starts the next compression stream after a cut.
func (u *upload) reopen() error {
	var dst io.Writer = u.sink
	if u.enc != nil {
		dst = u.enc
	}
	zw, err := u.r.codec.NewWriter(dst)
	if err != nil {
		return &InternalError{Err: fmt.Errorf("%s: %w", u.r.codec.Name, err)}
	}
	u.zw = zw
	return nil
}

// suspendGrace bounds how long an interrupted run waits for its parts in
// flight and its checkpoint; a Lambda stop has its margin instead.
const suspendGrace = 30 * time.Second

// suspend cuts the stream, waits for the parts in flight and saves the
// checkpoint. cause, if not nil, is returned after saving (a cancelled
// run, a failed download); otherwise the ref to continue from.
func (u *upload) suspend(ctx context.Context, why string, cause error) (*final, *StoreCheckpoint, error) {
	grace := suspendGrace
	if d, ok := ctx.Deadline(); ok {
		grace = max(time.Until(d)-time.Second, time.Second)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	stop := context.AfterFunc(wctx, func() { u.sink.abort(fmt.Errorf("saving the checkpoint: %w", wctx.Err())) })
	defer stop()

	c, n, err := u.cut()
	if err == nil {
		u.cpWG.Wait()
		err = u.save(wctx, c, n)
	}
	if serr := u.sink.stop(); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		u.abandon()
		u.r.log.Warn("could not save a checkpoint; the next run goes on from the previous one", "key", CheckpointKey(u.key), "stop", why, "cause", err)
		if cause != nil {
			return nil, nil, cause
		}
		return nil, nil, err
	}
	ref := c.ref()
	u.r.log.Info("store step stopped; checkpoint saved", "database", u.exp.DatabaseName, "why", why,
		"sql_offset", c.SQLOffset, "sql_total", c.SQLTotal, "parts", len(c.Parts), "invocation", c.Invocations)
	if cause != nil {
		return nil, nil, cause
	}
	return nil, ref, nil
}

// finish ends the streams, uploads the last part, saves a final checkpoint
// (so that a crash before the manifest is written can still be completed
// and vouched for) and completes the upload. When the stop time has passed
// by then, or the deadline cuts the completion, it returns the final
// checkpoint's ref instead: the next invocation completes the upload.
func (u *upload) finish(ctx context.Context, late bool) (*final, *StoreCheckpoint, error) {
	if err := u.zw.Close(); err != nil {
		return nil, nil, u.fail(err)
	}
	if u.enc != nil {
		if err := u.enc.Close(); err != nil {
			return nil, nil, u.fail(err)
		}
	}
	if total := u.cp.SQLTotal; total >= 0 && u.offset != total {
		return nil, nil, u.fail(&IntegrityError{Msg: fmt.Sprintf("dump of %s: read %d bytes, D1 announced %d", u.exp.DatabaseName, u.offset, total)})
	}
	res := &final{SQLBytes: u.offset, SQLSHA256: u.sql.Sum(), StoredBytes: u.sink.digest.N(), StoredSHA256: u.sink.digest.Sum()}
	u.r.log.Debug("dump read to its end", "key", u.key, "sql_bytes", res.SQLBytes, "stored_bytes", res.StoredBytes)
	u.cpWG.Wait()
	if u.sink.uploadID == "" {
		err := u.sink.put(ctx)
		if err != nil {
			err = storeError("upload "+u.key, err)
		}
		if serr := u.sink.stop(); err == nil {
			err = serr
		}
		return res, nil, err
	}
	parts, err := u.sink.flush()
	if serr := u.sink.stop(); err == nil {
		err = serr
	}
	if err == nil {
		u.r.log.Debug("every part uploaded", "key", u.key, "parts", len(parts))
		err = u.saveFinal(ctx, parts, res)
	}
	switch {
	case err == nil && late:
		u.r.log.Info("dump stored in parts; the next invocation completes the upload", "database", u.exp.DatabaseName, "key", u.key)
		return nil, u.cp.ref(), nil
	case err == nil:
		if _, err = u.r.mp.CompleteUpload(ctx, u.key, u.sink.uploadID, parts); err != nil {
			if ctx.Err() != nil {
				// Cut by the deadline: complete next time (it may have
				// been completed after all; the next run sees which).
				return nil, u.cp.ref(), nil
			}
			err = storeError("complete the upload of "+u.key, err)
		}
	}
	if err != nil && !errors.Is(err, store.ErrExists) {
		u.abandon()
	}
	return res, nil, err
}

// saveFinal writes the checkpoint of an upload whose parts are all stored.
func (u *upload) saveFinal(ctx context.Context, parts []store.Part, res *final) error {
	c := *u.cp
	c.Parts, c.UploadID, c.tail = parts, u.sink.uploadID, nil
	c.Final = res
	c.UpdatedAt = u.r.cfg.Now().UTC()
	c.SQLOffset, c.StoredBytes, c.SealedAge = res.SQLBytes, res.StoredBytes, ""
	c.Segments++
	var err error
	if c.SQLState, err = u.sql.MarshalBinary(); err != nil {
		return &InternalError{Err: err}
	}
	if c.StoredState, err = u.sink.digest.MarshalBinary(); err != nil {
		return &InternalError{Err: err}
	}
	c.OverlapBytes, c.OverlapSHA256 = u.win.sum()
	if err := writeCheckpoint(ctx, u.r.store, &c); err != nil {
		return err
	}
	u.cp = &c
	return nil
}
