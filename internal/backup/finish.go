package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/d1backup/d1backup/internal/store"
)

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
