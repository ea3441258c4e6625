package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/clock"
	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/store"
)

// D1 is what the pipeline needs of the D1 API (implemented by *d1.Client).
type D1 interface {
	Resolve(ctx context.Context, uuidOrName string) (d1.Database, error)
	StartExport(ctx context.Context, databaseID string) (d1.ExportStatus, error)
	PollExport(ctx context.Context, databaseID, bookmark string) (d1.ExportStatus, error)
	Download(ctx context.Context, signedURL string, offset int64) (*d1.Download, error)
}

var _ D1 = (*d1.Client)(nil)

// Config tunes the pipeline. Every setting is used as given (the config
// package derives it from the settings table, with their defaults); NewRunner
// only checks it.
type Config struct {
	// Compression names a registered codec (see package codec).
	Compression string
	// Recipients are age X25519 public keys (age1...); when set, dumps are
	// encrypted to them after compression. The writer needs no identity, so
	// it cannot read backups.
	Recipients []string
	// PollInterval is the wait between polls.
	PollInterval time.Duration
	// ExportTimeout bounds one export from start to complete.
	ExportTimeout time.Duration
	// MaxRestarts bounds the new exports started after one stopped running
	// or its URL expired; 0 means none.
	MaxRestarts int
	// MaxRetries bounds Run's retries of retryable failures (rate limits,
	// busy exports, failed downloads or uploads); 0 means none.
	MaxRetries int
	// ToolVersion goes into manifests.
	ToolVersion string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Sleep waits between polls and retries; a context-aware time.Sleep if nil.
	Sleep func(ctx context.Context, d time.Duration) error
	// Progress, if set, is called as dump bytes stream through the store
	// step with the bytes so far and the total (-1 if unknown).
	Progress func(done, total int64)
	Logger   *slog.Logger

	// PartSize is the size of every uploaded part but the last (grown, in
	// whole MiB, for a dump that would need more than 10,000 parts);
	// PartConcurrency is how many parts are uploaded at once. Memory is
	// about (PartConcurrency + 1) × PartSize.
	PartSize        int64
	PartConcurrency int
	// StopMargin: a store step whose context has a deadline (a Lambda
	// invocation) stops that long before it, waits for its parts in flight,
	// saves a checkpoint and returns the Export to go on from.
	StopMargin time.Duration
	// CheckpointInterval is how often a running store step saves a
	// checkpoint in the background, so that a crash loses at most that
	// much; 0 saves one only when it stops.
	CheckpointInterval time.Duration
	// ManifestWait is how long a store step that finds this export's dump
	// without its manifest waits for a concurrent backup to write it.
	ManifestWait time.Duration
	// Sealer seals the secrets a checkpoint keeps in the bucket (the dump
	// URL, the encryption state). Without one the CLI cannot resume an
	// earlier run without a new export, and an encrypted upload cannot be
	// suspended.
	Sealer Sealer
}

// Sealer encrypts secrets with a key only the holders of the credentials
// have (implemented by *seal.Sealer).
type Sealer interface {
	Seal(plain string) string
	Open(sealed string) (string, error)
}

// Runner runs the pipeline's steps against one D1 account and one store.
type Runner struct {
	d1         D1
	store      store.Store
	mp         store.Multipart // store's, nil for steps that do not write
	cfg        Config
	codec      *codec.Codec
	recipients []age.Recipient
	log        *slog.Logger
}

// NewRunner checks cfg and returns a Runner.
func NewRunner(api D1, st store.Store, cfg Config) (*Runner, error) {
	c, err := codec.Lookup(cfg.Compression)
	switch {
	case err != nil:
		return nil, &ConfigError{Msg: err.Error()}
	case cfg.PollInterval <= 0:
		return nil, &ConfigError{Msg: fmt.Sprintf("poll interval %s must be positive", cfg.PollInterval)}
	case cfg.ExportTimeout <= 0:
		return nil, &ConfigError{Msg: fmt.Sprintf("export timeout %s must be positive", cfg.ExportTimeout)}
	case cfg.MaxRestarts < 0 || cfg.MaxRetries < 0:
		return nil, &ConfigError{Msg: fmt.Sprintf("max restarts %d and max retries %d must not be negative", cfg.MaxRestarts, cfg.MaxRetries)}
	case cfg.ToolVersion == "":
		return nil, &ConfigError{Msg: "tool version is empty"}
	case cfg.PartSize < store.MinPartSize || cfg.PartSize > store.MaxPartSize:
		return nil, &ConfigError{Msg: fmt.Sprintf("part size %d must be between 5 MiB and 5 GiB", cfg.PartSize)}
	case cfg.PartConcurrency < 1:
		return nil, &ConfigError{Msg: fmt.Sprintf("part concurrency %d must be at least 1", cfg.PartConcurrency)}
	case cfg.StopMargin < 0 || cfg.CheckpointInterval < 0 || cfg.ManifestWait < 0:
		return nil, &ConfigError{Msg: fmt.Sprintf("stop margin %s, checkpoint interval %s and manifest wait %s must not be negative", cfg.StopMargin, cfg.CheckpointInterval, cfg.ManifestWait)}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = clock.Sleep
	}
	recipients, err := ParseRecipients(cfg.Recipients)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mp, _ := st.(store.Multipart)
	return &Runner{d1: api, store: st, mp: mp, cfg: cfg, codec: c, recipients: recipients, log: log}, nil
}

// minWork is the least a store step streams before it honours its stop
// time, so that every invocation makes progress however short.
const minWork = time.Second

// stopTime is when a store step with a deadline stops to checkpoint.
func (r *Runner) stopTime(ctx context.Context) (time.Time, bool) {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Time{}, false
	}
	now := time.Now()
	stop := d.Add(-r.cfg.StopMargin)
	if stop.Sub(now) < minWork {
		stop = now.Add(min(minWork, d.Sub(now)/2))
	}
	return stop, true
}

// partSizeFor is the part size for a dump of total bytes (-1: unknown):
// the configured one, grown in whole MiB until the stored object (a little
// larger than the SQL when it does not compress) fits in 10,000 parts.
func (r *Runner) partSizeFor(total int64) int64 {
	ps := r.cfg.PartSize
	if total > 0 {
		bound := total + total/100 + 1<<20
		if least := bound/(store.MaxParts-1) + 1; ps < least {
			ps = (least + 1<<20 - 1) >> 20 << 20
		}
	}
	return min(ps, store.MaxPartSize)
}

// ParseRecipients parses age X25519 recipients (age1...).
func ParseRecipients(keys []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, k := range keys {
		r, err := age.ParseX25519Recipient(k)
		if err != nil {
			return nil, &ConfigError{Msg: fmt.Sprintf("age recipient %q: %v (expected a public key made by age-keygen, starting age1)", k, err)}
		}
		out = append(out, r)
	}
	return out, nil
}

// Start starts an export. in is a Target (database_id and/or database_name)
// or, when the workflow restarts an export that stopped, the previous Export.
func (r *Runner) Start(ctx context.Context, in Export) (Export, error) {
	restarts := in.Restarts
	ref := in.StoreCheckpoint
	switch {
	case in.Bookmark == "":
	case ref != nil && ref.SQLOffset > ref.URLOffset:
		// The dump URL expired after the store step got on with it (it
		// lives an hour): a new one is progress, not a failure.
		r.log.Info("starting a new export for a new dump URL; the upload goes on if the bookmark is unchanged", "database", label(in), "sql_offset", ref.SQLOffset, "sql_total", ref.SQLTotal)
	default:
		// A previous export of this input existed: this is a restart.
		restarts++
		if restarts > r.cfg.MaxRestarts {
			return Export{}, &TooManyRestartsError{Database: label(in), Restarts: restarts - 1, Cause: lastCause(in)}
		}
	}
	id, name := in.DatabaseID, in.DatabaseName
	if id == "" || name == "" {
		ref := id
		if ref == "" {
			ref = name
		}
		if ref == "" {
			return Export{}, &ConfigError{Msg: "no database given: set database_id or database_name"}
		}
		db, err := r.d1.Resolve(ctx, ref)
		if err != nil {
			return Export{}, err
		}
		id, name = db.UUID, db.Name
	}
	now := r.cfg.Now().UTC()
	st, err := r.d1.StartExport(ctx, id)
	if err != nil {
		return Export{}, err
	}
	out := Export{
		DatabaseID:          id,
		DatabaseName:        name,
		StartedAt:           now,
		Deadline:            now.Add(r.cfg.ExportTimeout),
		Restarts:            restarts,
		PollIntervalSeconds: int((r.cfg.PollInterval + time.Second - 1) / time.Second),
	}
	if ref != nil {
		// Kept for the store step, which goes on with the upload if the new
		// export has the same bookmark, and starts over otherwise.
		next := *ref
		next.URLOffset = ref.SQLOffset
		out.StoreCheckpoint = &next
	}
	r.apply(&out, st)
	r.log.Info("export started", "database", name, "database_id", id, "bookmark", out.Bookmark, "status", out.Status, "restarts", restarts)
	return out, nil
}

// Poll polls a running export once.
func (r *Runner) Poll(ctx context.Context, in Export) (Export, error) {
	if in.DatabaseID == "" || in.Bookmark == "" {
		return Export{}, &ConfigError{Msg: "poll needs database_id and bookmark (the output of the start step)"}
	}
	if !in.Deadline.IsZero() && r.cfg.Now().After(in.Deadline) {
		return Export{}, &ExportTimeoutError{Database: label(in), Deadline: in.Deadline, Polls: in.Polls}
	}
	st, err := r.d1.PollExport(ctx, in.DatabaseID, in.Bookmark)
	if err != nil {
		return Export{}, err
	}
	out := in
	out.Polls++
	r.apply(&out, st)
	r.log.Debug("export polled", "database", in.DatabaseName, "bookmark", out.Bookmark, "status", out.Status, "polls", out.Polls)
	return out, nil
}

func (r *Runner) apply(e *Export, st d1.ExportStatus) {
	e.Bookmark = st.Bookmark
	e.Status = st.Status
	e.Error = st.Error
	if st.Status == StatusComplete {
		e.SignedURL = st.SignedURL
		if e.CompletedAt == nil {
			t := r.cfg.Now().UTC()
			e.CompletedAt = &t
		}
	}
}

// Run backs up one database start to finish: preflight the destination,
// start, poll until complete, store. Retryable failures are retried and a
// stopped export is restarted, both a bounded number of times. A backup of
// the database that an earlier run left unfinished (Ctrl-C, a crash, a lost
// network) is continued: with that run's dump URL while it is good, else
// with a new export if the bookmark is unchanged.
func (r *Runner) Run(ctx context.Context, target Target) (Summary, error) {
	// The export blocks the database: prove the destination works first.
	if err := Preflight(ctx, r.store); err != nil {
		return Summary{}, err
	}
	exp := Export{DatabaseID: target.DatabaseID, DatabaseName: target.DatabaseName}
	start := true
	if resumed, ok, err := r.interrupted(ctx, target); err != nil {
		return Summary{}, err
	} else if ok {
		exp, start = resumed, resumed.SignedURL == ""
	}
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
// this configuration and returns the Export that continues it, with its
// sealed dump URL when there is one.
func (r *Runner) interrupted(ctx context.Context, target Target) (Export, bool, error) {
	if r.mp == nil {
		return Export{}, false, nil
	}
	id, name := target.DatabaseID, target.DatabaseName
	if id == "" {
		db, err := r.d1.Resolve(ctx, name)
		if err != nil {
			return Export{}, false, err
		}
		id, name = db.UUID, db.Name
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
		r.log.Info("continuing an interrupted backup", "database", exp.DatabaseName, "bookmark", cp.Bookmark,
			"sql_offset", cp.SQLOffset, "sql_total", cp.SQLTotal, "with_its_url", exp.SignedURL != "")
		return exp, true, nil
	}
	return Export{}, false, nil
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
	exp.StoreCheckpoint = cp.ref()
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

func label(e Export) string {
	switch {
	case e.DatabaseName != "" && e.DatabaseID != "":
		return fmt.Sprintf("%s (%s)", e.DatabaseName, e.DatabaseID)
	case e.DatabaseName != "":
		return e.DatabaseName
	}
	return e.DatabaseID
}

func lastCause(e Export) string {
	if e.RestartCause != nil {
		return e.RestartCause.Cause
	}
	return "unknown"
}
