// Package step holds the Lambda handlers of the backup workflow: thin
// adapters that turn step input into pipeline calls and every failure into a
// classified error whose Go type name the state machine matches.
package step

import (
	"context"
	"errors"
	"io"
	"reflect"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/executions"
	"github.com/d1backup/d1backup/internal/seal"
	"github.com/d1backup/d1backup/internal/store"
)

// Handlers serves the steps of one deployment.
type Handlers struct {
	now     func() time.Time
	metrics io.Writer
	// deps returns the clients, built from the current secrets.
	deps func(ctx context.Context) (*deps, error)
	// invalidate drops the kept secrets, so the next invocation reads them
	// again.
	invalidate func()
}

// deps are the clients of one set of credentials; which of them exist
// depends on the function's Options.
type deps struct {
	cfg    config.Config
	sel    backup.Selection
	api    *d1.Client
	runner *backup.Runner
	sealer *seal.Sealer
	store  store.Store
	sfn    executions.API
}

// fail classifies a step's error for the state machine. A failure that may
// come from stale credentials (a rejected API token, refused R2 keys, a
// sealed URL that no longer opens) drops the kept secrets, so that a retry
// or a redrive reads them again: a secret filled in or rotated after the
// failure then takes effect at once.
func (h *Handlers) fail(err error) error {
	c := classify(err)
	var (
		auth   *d1.AuthError
		refuse *backup.StoreFailedError
		sealed *SealedURLError
	)
	if errors.As(c, &auth) || errors.As(c, &refuse) || errors.As(c, &sealed) {
		h.invalidate()
	}
	return c
}

// classify returns the classified error in err's chain: one of the step
// package's own classes, else the pipeline's (backup.Classified).
func classify(err error) error {
	for _, c := range ownClasses {
		if e := c.Find(err); e != nil {
			return e
		}
	}
	return backup.Classified(err)
}

// SealedURLError: the sealed dump URL in the workflow state does not open
// (the sealing key was rotated, or the state was altered). Like an expired
// URL, only a new export goes on: the workflow starts one.
type SealedURLError struct{ Err error }

func (e *SealedURLError) Error() string {
	return "step: the sealed dump URL in the workflow state does not open (" + e.Err.Error() + "); a new export is needed"
}
func (e *SealedURLError) Unwrap() error { return e.Err }

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
