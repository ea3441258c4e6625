package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/clock"
	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/querydump"
	"github.com/d1backup/d1backup/internal/store"
)

// D1 is what the pipeline needs of the D1 API (implemented by *d1.Client).
type D1 interface {
	Resolve(ctx context.Context, uuidOrName string) (d1.Database, error)
	StartExport(ctx context.Context, databaseID string) (d1.ExportStatus, error)
	PollExport(ctx context.Context, databaseID, bookmark string) (d1.ExportStatus, error)
	Download(ctx context.Context, signedURL string) (*d1.Download, error)
	// Raw and Bookmark read a database through the query API (MethodQuery).
	Raw(ctx context.Context, databaseID, sql string) ([]d1.Rows, error)
	Bookmark(ctx context.Context, databaseID string) (string, error)
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
	// Method is how databases are read: MethodExport, MethodQuery or
	// MethodAuto (export, and the query API where D1 refuses to export).
	Method string
	// Query tunes reads through the query API (querydump.DefaultOptions).
	Query querydump.Options
	// DestJurisdiction is the R2 jurisdiction of the destination bucket
	// ("default", "eu", "fedramp"), or "" for a folder. A database with a
	// jurisdiction is refused for a bucket outside it unless
	// AllowCrossJurisdiction.
	DestJurisdiction       string
	AllowCrossJurisdiction bool
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Sleep waits between polls and retries; a context-aware time.Sleep if nil.
	Sleep func(ctx context.Context, d time.Duration) error
	// Progress, if set, is called as dump bytes stream through the store
	// step with the bytes so far and the total (-1 if unknown).
	Progress func(done, total int64)
	// OnExport, if set, is called with the export's state once it has
	// started and after every poll (the CLI shows elapsed time and polls
	// while D1 blocks the database).
	OnExport func(Export)
	Logger   *slog.Logger
}

// Runner runs the pipeline's steps against one D1 account and one store.
type Runner struct {
	d1         D1
	store      store.Store
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
	case !slices.Contains(Methods(), cfg.Method):
		return nil, &ConfigError{Msg: fmt.Sprintf("method %q: must be one of %s", cfg.Method, strings.Join(Methods(), ", "))}
	case cfg.DestJurisdiction != "" && !slices.Contains(Jurisdictions(), cfg.DestJurisdiction):
		return nil, &ConfigError{Msg: fmt.Sprintf("destination jurisdiction %q: must be one of %s", cfg.DestJurisdiction, strings.Join(Jurisdictions(), ", "))}
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
	return &Runner{d1: api, store: st, cfg: cfg, codec: c, recipients: recipients, log: log}, nil
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
// A database whose data must stay in its jurisdiction is refused first when
// the destination is outside it (ResidencyError). Under MethodQuery no
// export is started: the status is StatusQuery at once; under MethodAuto
// an export D1 refuses for virtual tables ends in StatusQuery too.
func (r *Runner) Start(ctx context.Context, in Export) (Export, error) {
	restarts := in.Restarts
	if in.Bookmark != "" {
		// A previous export of this input existed: this is a restart.
		restarts++
		if restarts > r.cfg.MaxRestarts {
			return Export{}, &TooManyRestartsError{Database: label(in), Restarts: restarts - 1, Cause: lastCause(in)}
		}
	}
	id, name := in.DatabaseID, in.DatabaseName
	if id == "" || name == "" || r.residencyMatters() {
		db, err := r.resolve(ctx, in)
		if err != nil {
			return Export{}, err
		}
		id, name = db.UUID, db.Name
	}
	now := r.cfg.Now().UTC()
	out := Export{
		DatabaseID:          id,
		DatabaseName:        name,
		StartedAt:           now,
		Deadline:            now.Add(r.cfg.ExportTimeout),
		Restarts:            restarts,
		PollIntervalSeconds: int((r.cfg.PollInterval + time.Second - 1) / time.Second),
	}
	if r.cfg.Method == MethodQuery {
		out.Status = StatusQuery
		r.log.Info("reading through the query API", "database", name, "database_id", id)
		return out, nil
	}
	st, err := r.d1.StartExport(ctx, id)
	if r.queryInstead(&out, err) {
		return out, nil
	}
	if err != nil {
		return Export{}, err
	}
	r.apply(&out, st)
	r.notify(out)
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
	out := in
	out.Polls++
	if r.queryInstead(&out, err) {
		return out, nil
	}
	if err != nil {
		return Export{}, err
	}
	r.apply(&out, st)
	r.notify(out)
	r.log.Debug("export polled", "database", in.DatabaseName, "bookmark", out.Bookmark, "status", out.Status, "polls", out.Polls)
	return out, nil
}

func (r *Runner) notify(e Export) {
	if r.cfg.OnExport != nil {
		r.cfg.OnExport(e)
	}
}

func (r *Runner) apply(e *Export, st d1.ExportStatus) {
	e.Bookmark = st.Bookmark
	e.Status = st.Status
	e.Error = st.Error
	if st.Status == StatusError && r.toQuery(st.Error, nil) {
		e.Status = StatusQuery
		r.log.Warn("D1 cannot export this database; reading it through the query API", "database", e.DatabaseName, "cause", st.Error)
	}
	if st.Status == StatusComplete {
		e.SignedURL = st.SignedURL
		if e.CompletedAt == nil {
			t := r.cfg.Now().UTC()
			e.CompletedAt = &t
		}
	}
}

// Run backs up one database start to finish: preflight the destination,
// start, poll until complete, store (or read through the query API).
// Retryable failures are retried and a stopped export is restarted, both a
// bounded number of times.
func (r *Runner) Run(ctx context.Context, target Target) (Summary, error) {
	// The export blocks the database: prove the destination works first.
	if err := Preflight(ctx, r.store); err != nil {
		return Summary{}, err
	}
	exp := Export{DatabaseID: target.DatabaseID, DatabaseName: target.DatabaseName}
	start, failures := true, 0
	for {
		var sum Summary
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
				sum, err = r.Query(ctx, exp)
			} else {
				sum, err = r.Store(ctx, exp)
			}
			return err
		}()
		switch {
		case err == nil:
			return sum, nil
		case ctx.Err() != nil:
			return Summary{}, err
		case d1.NeedsNewExport(err) && exp.Bookmark != "":
			r.log.Warn("export stopped; starting a new one", "database", exp.DatabaseName, "cause", err)
			exp.RestartCause = &StepError{Error: fmt.Sprintf("%T", err), Cause: err.Error()}
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
