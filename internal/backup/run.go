package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/d1backup/d1backup/internal/d1"
)

// Run backs up one database start to finish: preflight the destination,
// start, poll until complete, store (or read through the query API). Retryable failures are retried and a
// stopped export is restarted, both a bounded number of times. A backup of
// the database that an earlier run left unfinished (Ctrl-C, a crash, a lost
// network) is continued: with that run's dump URL while it is good, else
// with a new export if the bookmark is unchanged.
func (r *Runner) Run(ctx context.Context, target Target) (Summary, error) {
	// The export blocks the database: prove the destination works first.
	if err := Preflight(ctx, r.store); err != nil {
		return Summary{}, err
	}
	exp, resumed, err := r.interrupted(ctx, target)
	if err != nil {
		return Summary{}, err
	}
	start := !resumed || exp.SignedURL == ""
	failures := 0
	for {
		var res StoreResult
		err := func() error {
			if start {
				next, err := r.Start(ctx, exp)
				if err != nil {
					return err
				}
				exp, start = next, false
			}
			next, err := r.waitComplete(ctx, exp)
			if err != nil {
				return err
			}
			exp = next
			if exp.Status == StatusQuery {
				sum, err := r.Query(ctx, exp)
				if err == nil {
					res = StoreResult{Summary: &sum}
				}
				return err
			}
			res, err = r.Store(ctx, exp)
			return err
		}()
		switch {
		case err == nil && res.Summary != nil:
			return *res.Summary, nil
		case err == nil:
			exp = *res.Next // stopped at a deadline of ctx: go on
		case ctx.Err() != nil:
			return Summary{}, err
		case d1.NeedsNewExport(err) && exp.Bookmark != "":
			r.log.Warn("export stopped or its URL expired; starting a new one", "database", exp.DatabaseName, "cause", err)
			exp.RestartCause = &StepError{Error: fmt.Sprintf("%T", err), Cause: err.Error()}
			exp.SignedURL = ""
			r.refresh(ctx, &exp)
			start = true
		case KindOf(err) == Retryable && failures < r.cfg.MaxRetries:
			failures++
			d := backoff(failures, err)
			r.log.Warn("retrying", "database", label(exp), "attempt", failures+1, "wait", d, "cause", err)
			if serr := r.cfg.Sleep(ctx, d); serr != nil {
				return Summary{}, err
			}
		default:
			return Summary{}, err
		}
	}
}

// interrupted finds the newest checkpoint of the target's backups made with
// this configuration and returns the Export that continues it (resumed),
// with its sealed dump URL when there is one; else the target, resolved.
func (r *Runner) interrupted(ctx context.Context, target Target) (Export, bool, error) {
	id, name := target.DatabaseID, target.DatabaseName
	if id == "" {
		db, err := r.d1.Resolve(ctx, name)
		if err != nil {
			return Export{}, false, err
		}
		id, name = db.UUID, db.Name
	}
	none := Export{DatabaseID: id, DatabaseName: name}
	if r.mp == nil {
		return none, false, nil
	}
	objs, err := r.store.List(ctx, DatabasePrefix(id))
	if err != nil {
		return Export{}, false, storeError("look for interrupted backups", err)
	}
	for i := len(objs) - 1; i >= 0; i-- {
		k, ok := ParseKey(objs[i].Key)
		if !ok || !k.Checkpoint || k.Compression != r.cfg.Compression || k.Encrypted != (len(r.recipients) > 0) {
			continue
		}
		cp, err := readCheckpoint(ctx, r.store, objs[i].Key)
		if err != nil || cp == nil {
			continue // the store step deals with it if it is in the way
		}
		exp := Export{
			DatabaseID: id, DatabaseName: cmp.Or(name, cp.DatabaseName), Bookmark: cp.Bookmark, Status: StatusComplete,
			StartedAt: cp.ExportStartedAt, CompletedAt: cp.ExportCompletedAt, StoreCheckpoint: cp.ref(),
		}
		if r.cfg.Sealer != nil && cp.SealedURL != "" {
			if u, err := r.cfg.Sealer.Open(cp.SealedURL); err == nil {
				exp.SignedURL = u
			}
		}
		note := fmt.Sprintf("continued an interrupted backup at byte %d of %d", cp.SQLOffset, cp.SQLTotal)
		exp.StoreCheckpoint.Notes = append(exp.StoreCheckpoint.Notes, note)
		r.log.Info(note, "database", exp.DatabaseName, "bookmark", cp.Bookmark, "with_its_url", exp.SignedURL != "")
		return exp, true, nil
	}
	return none, false, nil
}

// refresh updates exp's checkpoint ref from the bucket, where a failed store
// step may have saved a newer one.
func (r *Runner) refresh(ctx context.Context, exp *Export) {
	if r.mp == nil || exp.Bookmark == "" {
		return
	}
	key, err := DumpKey(exp.DatabaseID, exp.Bookmark, r.cfg.Compression, len(r.recipients) > 0)
	if err != nil {
		return
	}
	cp, err := readCheckpoint(ctx, r.store, CheckpointKey(key))
	if err != nil || cp == nil || (exp.StoreCheckpoint != nil && exp.StoreCheckpoint.Run != cp.Run) {
		return
	}
	ref := cp.ref()
	if old := exp.StoreCheckpoint; old != nil && len(old.Notes) > len(ref.Notes) {
		ref.Notes = old.Notes // said since the checkpoint was saved
	}
	exp.StoreCheckpoint = ref
}

func backoff(attempt int, err error) time.Duration {
	var rl *d1.RateLimitError
	if errors.As(err, &rl) && rl.RetryAfter > 0 {
		return rl.RetryAfter
	}
	return time.Duration(1<<min(attempt-1, 5)) * 2 * time.Second
}

// waitComplete polls until the export is no longer active.
func (r *Runner) waitComplete(ctx context.Context, exp Export) (Export, error) {
	for exp.Status == StatusActive {
		if err := r.cfg.Sleep(ctx, r.cfg.PollInterval); err != nil {
			return exp, err
		}
		next, err := r.Poll(ctx, exp)
		if err != nil {
			if d1.IsRetryable(err) && !errors.Is(err, context.Canceled) {
				// One failed poll must not cancel the export: it only
				// cancels itself after a longer silence.
				r.log.Warn("poll failed; polling again", "database", exp.DatabaseName, "cause", err)
				if serr := r.cfg.Sleep(ctx, backoff(1, err)); serr != nil {
					return exp, err
				}
				exp.Polls++
				continue
			}
			return exp, err
		}
		exp = next
	}
	if exp.Status == StatusError {
		return exp, &d1.ExportFailedError{Database: label(exp), Message: exp.Error}
	}
	return exp, nil
}
