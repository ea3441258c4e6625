package step

import (
	"context"
	"fmt"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1"
)

// ExportState is the per-database workflow's state between the export
// steps: the pipeline's Export plus the wait on rate limits.
type ExportState struct {
	backup.Export
	Throttle
}

// CheckDestination proves the destination takes writes and deletes before
// D1 is asked for an export (which blocks the database): a wrong bucket or
// refused R2 keys fail here, with nothing exported. Its output is ignored
// (the definition passes its input on).
func (h *Handlers) CheckDestination(ctx context.Context, in backup.Target) (backup.Target, error) {
	d, err := h.storeDeps(ctx)
	if err != nil {
		return backup.Target{}, err
	}
	if err := backup.Preflight(ctx, d.store); err != nil {
		return backup.Target{}, h.fail(err)
	}
	return in, nil
}

// StartExport starts an export of the target, or a new one when the input
// is an Export whose export stopped (counted against the restarts). In a
// redriven execution an export from an earlier attempt starts afresh with
// the restarts reset: the redrive is the operator's "try again".
func (h *Handlers) StartExport(ctx context.Context, in Invocation[ExportState]) (ExportState, error) {
	d, err := h.d1Deps(ctx)
	if err != nil {
		return ExportState{}, err
	}
	st := in.State
	if st.Bookmark != "" && in.Execution.Stale(st.StartedAt) {
		return h.start(ctx, d, st, anew(st.Export))
	}
	return h.start(ctx, d, st, st.Export)
}

// PollExport polls a running export once. While it runs, the next wait
// doubles up to the configured cap, which bounds the history of a long
// export. In a redriven execution, an export from an earlier attempt that
// is past its deadline or ended in an error is started afresh.
func (h *Handlers) PollExport(ctx context.Context, in Invocation[ExportState]) (ExportState, error) {
	d, err := h.d1Deps(ctx)
	if err != nil {
		return ExportState{}, err
	}
	st := in.State
	stale := in.Execution.Stale(st.StartedAt)
	if stale && !st.Deadline.IsZero() && h.now().After(st.Deadline) {
		return h.start(ctx, d, st, anew(st.Export))
	}
	out, err := d.runner.Poll(ctx, st.Export)
	if err != nil {
		return waitOr(h, &st, &st.Throttle, err)
	}
	if out.Status == backup.StatusError && stale {
		return h.start(ctx, d, st, anew(st.Export))
	}
	if out.Status == backup.StatusActive {
		out.PollIntervalSeconds = nextPoll(st.PollIntervalSeconds, d.cfg.PollInterval, d.cfg.PollIntervalMax)
	}
	return h.exported(d, out, st.Throttle)
}

// start starts the export e (st's, or a fresh one in its place).
func (h *Handlers) start(ctx context.Context, d *deps, st ExportState, e backup.Export) (ExportState, error) {
	out, err := d.runner.Start(ctx, e)
	if err != nil {
		return waitOr(h, &st, &st.Throttle, err)
	}
	return h.exported(d, out, st.Throttle)
}

// exported checks an export's status and seals its URL. StatusQuery (the
// method is query, or D1 refused to export the database) goes on to the
// QueryDump step. An export that
// ended in an error fails the step with D1's message (so that the
// execution stops at the step and a redrive reruns it); a status the
// workflow does not know is a contract bug.
func (h *Handlers) exported(d *deps, out backup.Export, t Throttle) (ExportState, error) {
	switch out.Status {
	case backup.StatusActive, backup.StatusComplete, backup.StatusQuery:
	case backup.StatusError:
		return ExportState{}, &d1.ExportFailedError{Database: label(out), Message: out.Error}
	default:
		return ExportState{}, &backup.InternalError{Err: fmt.Errorf("export of %s: D1 reported status %q, which the workflow does not know", label(out), out.Status)}
	}
	if out.SignedURL != "" {
		out.SealedURL = d.sealer.Seal(out.SignedURL)
		out.SignedURL = ""
	}
	return ExportState{Export: out, Throttle: t.done()}, nil
}

// anew is e made ready for a fresh start: the same database (and store
// checkpoint), no export, no restarts counted.
func anew(e backup.Export) backup.Export {
	e.Bookmark, e.Status, e.Error, e.SealedURL, e.SignedURL = "", "", "", "", ""
	e.StartedAt, e.Deadline, e.CompletedAt = time.Time{}, time.Time{}, nil
	e.Polls, e.Restarts, e.RestartCause, e.PollIntervalSeconds = 0, 0, nil, 0
	return e
}

// nextPoll is the wait before the next poll: first the configured
// interval, then twice the last, up to the cap (an interval above the cap
// is not backed off).
func nextPoll(lastSeconds int, first, limit time.Duration) int {
	next := 2 * time.Duration(lastSeconds) * time.Second
	if lastSeconds <= 0 {
		next = first
	}
	return int(min(max(next, first), max(limit, first)) / time.Second)
}

func label(e backup.Export) string {
	if e.DatabaseName != "" {
		return e.DatabaseName
	}
	return e.DatabaseID
}

// StoreDump streams a complete export's dump into the bucket. It returns
// the finished backup's Summary (JSON with "manifest_key"), or, when the
// invocation's deadline came first, the Export it was given with
// "store_checkpoint" set: the workflow runs StoreDump again with it until
// the Summary comes back. The checkpoint itself is in the bucket; the
// workflow state carries only its key and counts, and the URL stays sealed.
func (h *Handlers) StoreDump(ctx context.Context, in backup.Export) (backup.StoreResult, error) {
	d, err := h.deps(ctx)
	if err != nil {
		return backup.StoreResult{}, err
	}
	if in.SealedURL == "" {
		return backup.StoreResult{}, &backup.ConfigError{Msg: fmt.Sprintf("store step input has no sealed_url (export status %q)", in.Status)}
	}
	url, err := d.openURL(in.SealedURL)
	if err != nil {
		return backup.StoreResult{}, h.fail(err)
	}
	in.SignedURL = url
	res, err := d.runner.Store(ctx, in)
	if err != nil {
		return backup.StoreResult{}, h.fail(err)
	}
	if res.Next != nil {
		next := *res.Next
		if next.SignedURL != "" {
			next.SealedURL, next.SignedURL = d.sealer.Seal(next.SignedURL), ""
		}
		return backup.StoreResult{Next: &next}, nil
	}
	if h.metrics != nil {
		// A metric that fails to print must not fail a stored backup.
		_ = h.storedMetrics(d, *res.Summary, in)
	}
	return res, nil
}

// openURL opens a sealed dump URL; one that does not open (the sealing
// key changed since it was sealed) is a SealedURLError, which the workflow
// answers with a new export.
func (d *deps) openURL(sealed string) (string, error) {
	if d.sealer == nil || d.runner == nil {
		return "", &backup.ConfigError{Msg: "the store step has no sealing key or D1 client (step registry Options)"}
	}
	url, err := d.sealer.Open(sealed)
	if err != nil {
		return "", &SealedURLError{Err: err}
	}
	return url, nil
}
