package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

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
		u.unsealable = true // never saved: the cut alone is harmless
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
