package backup

import (
	"context"
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
	Download(ctx context.Context, signedURL string, offset int64) (*d1.Download, error)
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
	case !slices.Contains(Methods(), cfg.Method):
		return nil, &ConfigError{Msg: fmt.Sprintf("method %q: must be one of %s", cfg.Method, strings.Join(Methods(), ", "))}
	case cfg.DestJurisdiction != "" && !slices.Contains(Jurisdictions(), cfg.DestJurisdiction):
		return nil, &ConfigError{Msg: fmt.Sprintf("destination jurisdiction %q: must be one of %s", cfg.DestJurisdiction, strings.Join(Jurisdictions(), ", "))}
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
// A database whose data must stay in its jurisdiction is refused first when
// the destination is outside it (ResidencyError). Under MethodQuery no
// export is started: the status is StatusQuery at once; under MethodAuto
// an export D1 refuses for virtual tables ends in StatusQuery too.
func (r *Runner) Start(ctx context.Context, in Export) (Export, error) {
	restarts := in.Restarts
	ref := in.StoreCheckpoint
	// The dump URL expired after the store step got on with it (it lives an
	// hour): a new export for a new URL is progress, not a failure, as long
	// as its bookmark is the same (counted below if not).
	renewal := in.Bookmark != "" && ref != nil && ref.SQLOffset > ref.URLOffset
	if in.Bookmark != "" {
		if !renewal {
			// A previous export of this input existed: this is a restart.
			restarts++
		}
		if restarts > r.cfg.MaxRestarts {
			return Export{}, &TooManyRestartsError{Database: label(in), Restarts: restarts - 1, Cause: lastCause(in)}
		}
	}
	if renewal {
		r.log.Info("starting a new export for a new dump URL; the upload goes on if the bookmark is unchanged", "database", label(in), "sql_offset", ref.SQLOffset, "sql_total", ref.SQLTotal)
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
	if ref != nil {
		// Kept for the store step, which goes on with the upload if the new
		// export has the same bookmark, and starts over otherwise.
		next := *ref
		next.URLOffset = ref.SQLOffset
		out.StoreCheckpoint = &next
	}
	st, err := r.d1.StartExport(ctx, id)
	if r.queryInstead(&out, err) {
		return out, nil
	}
	if err != nil {
		return Export{}, err
	}
	r.apply(&out, st)
	if renewal && out.Bookmark != in.Bookmark {
		// The store starts over: that is a restart after all, and the
		// next one past the limit fails.
		out.Restarts++
		r.log.Warn("the database changed since its dump was exported; the store step starts over", "database", name, "bookmark", in.Bookmark, "now", out.Bookmark, "restarts", out.Restarts)
	}
	r.notify(out)
	r.log.Info("export started", "database", name, "database_id", id, "bookmark", out.Bookmark, "status", out.Status, "restarts", out.Restarts)
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
