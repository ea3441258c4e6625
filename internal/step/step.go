// Package step holds the Lambda handlers of the backup workflow: thin
// adapters that turn step input into pipeline calls and every failure into a
// classified error whose Go type name the state machine matches.
package step

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/retention"
	"github.com/d1backup/d1backup/internal/seal"
	"github.com/d1backup/d1backup/internal/store"
)

// Handlers serves the steps of one deployment.
type Handlers struct {
	initErr   error
	metrics   io.Writer
	now       func() time.Time
	runner    *backup.Runner
	api       *d1.Client
	sealer    *seal.Sealer
	sel       backup.Selection
	store     store.Store
	policy    retention.Policy
	verifyMax int64
}

// Deps are what New builds Handlers from; Store may be nil for steps that
// do not write (discover, start, poll).
type Deps struct {
	Config     config.Config
	HTTPClient *http.Client
	Store      store.Store
	// Backup is the pipeline's configuration (Config.Backup, plus a
	// logger).
	Backup backup.Config
	// Metrics receives the Embedded Metric Format line of each stored
	// backup (Lambda: stdout); nil writes none.
	Metrics io.Writer
}

// New builds the handlers from a loaded configuration.
func New(d Deps) (*Handlers, error) {
	api, err := d.Config.D1Client(d.HTTPClient)
	if err != nil {
		return nil, &backup.ConfigError{Msg: err.Error()}
	}
	sealer, err := seal.New(d.Config.APIToken, d.Config.R2SecretAccessKey)
	if err != nil {
		return nil, &backup.ConfigError{Msg: "derive the key that seals dump URLs: " + config.EnvAPIToken + " (and " + config.EnvR2Secret + ") are too short to be real credentials"}
	}
	runner, err := backup.NewRunner(api, d.Store, d.Backup)
	if err != nil {
		return nil, err
	}
	return &Handlers{runner: runner, api: api, sealer: sealer, metrics: d.Metrics, now: time.Now,
		store: d.Store, policy: d.Config.Retention, verifyMax: d.Config.VerifyMaxBytes, sel: d.Config.Selection()}, nil
}

// DiscoverOutput is the discover step's output, the run workflow's Map input.
type DiscoverOutput struct {
	Databases []backup.Target `json:"databases"`
}

// Discover lists the databases the scheduled run backs up.
func (h *Handlers) Discover(ctx context.Context, _ struct{}) (DiscoverOutput, error) {
	if h.initErr != nil {
		return DiscoverOutput{}, h.initErr
	}
	ts, err := backup.Discover(ctx, h.api, h.sel)
	if err != nil {
		return DiscoverOutput{}, backup.Classified(err)
	}
	if ts == nil {
		ts = []backup.Target{}
	}
	return DiscoverOutput{Databases: ts}, nil
}

// StartExport starts (or, after a stopped export, restarts) an export.
func (h *Handlers) StartExport(ctx context.Context, in backup.Export) (backup.Export, error) {
	if h.initErr != nil {
		return backup.Export{}, h.initErr
	}
	out, err := h.runner.Start(ctx, in)
	if err != nil {
		return backup.Export{}, backup.Classified(err)
	}
	return h.sealed(out), nil
}

// PollExport polls a running export once.
func (h *Handlers) PollExport(ctx context.Context, in backup.Export) (backup.Export, error) {
	if h.initErr != nil {
		return backup.Export{}, h.initErr
	}
	out, err := h.runner.Poll(ctx, in)
	if err != nil {
		return backup.Export{}, backup.Classified(err)
	}
	return h.sealed(out), nil
}

// StoreDump streams a complete export's dump into the bucket. It returns
// the finished backup's Summary (JSON with "manifest_key"), or, when the
// invocation's deadline came first, the Export it was given with
// "store_checkpoint" set: the workflow runs StoreDump again with it until
// the Summary comes back. The checkpoint itself is in the bucket; the
// workflow state carries only its key and counts, and the URL stays sealed.
func (h *Handlers) StoreDump(ctx context.Context, in backup.Export) (backup.StoreResult, error) {
	if h.initErr != nil {
		return backup.StoreResult{}, h.initErr
	}
	if in.SealedURL == "" {
		return backup.StoreResult{}, &backup.ConfigError{Msg: fmt.Sprintf("store step input has no sealed_url (export status %q)", in.Status)}
	}
	url, err := h.sealer.Open(in.SealedURL)
	if err != nil {
		return backup.StoreResult{}, &backup.IntegrityError{Msg: err.Error()}
	}
	in.SignedURL = url
	res, err := h.runner.Store(ctx, in)
	if err != nil {
		return backup.StoreResult{}, backup.Classified(err)
	}
	if res.Next != nil {
		next := h.sealed(*res.Next)
		return backup.StoreResult{Next: &next}, nil
	}
	if h.metrics != nil {
		// A metric that fails to print must not fail a stored backup.
		_ = writeMetrics(h.metrics, *res.Summary, in, h.now())
	}
	return res, nil
}

// Prune applies the retention policy to the database of a backup just
// stored. With no policy configured it keeps everything.
func (h *Handlers) Prune(ctx context.Context, in Result) (Result, error) {
	if h.initErr != nil {
		return Result{}, h.initErr
	}
	if in.DatabaseID == "" {
		return Result{}, &backup.ConfigError{Msg: "prune step input has no database_id (the store step's output)"}
	}
	res, err := backup.Prune(ctx, h.store, in.DatabaseID, h.policy, h.now(), false)
	if err != nil {
		return Result{}, backup.Classified(err)
	}
	in.Retention = &res
	return in, nil
}

func (h *Handlers) sealed(e backup.Export) backup.Export {
	if e.SignedURL != "" {
		e.SealedURL = h.sealer.Seal(e.SignedURL)
		e.SignedURL = ""
	}
	return e
}

// ErrorType is the errorType aws-lambda-go reports for err: the name of
// its Go type, dereferenced once. The local simulation uses it so that Retry
// and Catch match exactly as they will in AWS.
func ErrorType(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		return t.Elem().Name()
	}
	return t.Name()
}
