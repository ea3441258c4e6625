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
	// unsealable: encrypted, with no sealer for its state; never saved.
	unsealable bool
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
		if every > 0 && time.Now().After(next) && !u.cpBusy.Load() && !u.unsealable {
			if err := u.periodic(ctx); err != nil {
				return nil, nil, u.fail(err)
			}
			next = time.Now().Add(every)
		}
	}
}
