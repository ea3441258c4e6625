package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"time"

	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/querydump"
)

// ExportTimeoutError: the export was still running at its deadline.
type ExportTimeoutError struct {
	Database string
	Deadline time.Time
	Polls    int
}

func (e *ExportTimeoutError) Error() string {
	return fmt.Sprintf("backup: export of database %s still running at its deadline %s after %d polls; the database stays blocked while it runs: check it in the dashboard, then raise the export timeout", e.Database, e.Deadline.Format(time.RFC3339), e.Polls)
}

// TooManyRestartsError: exports kept stopping or their URLs kept expiring.
type TooManyRestartsError struct {
	Database string
	Restarts int
	Cause    string
}

func (e *TooManyRestartsError) Error() string {
	return fmt.Sprintf("backup: gave up on database %s after %d restarted exports (last: %s)", e.Database, e.Restarts, e.Cause)
}

// ConfigError is a setting or step input that cannot work.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return "backup: " + e.Msg }

// ConflictError: a different object already sits under a backup's key.
type ConflictError struct {
	Key string
	Msg string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("backup: %s already holds a different object (%s); it was left untouched: move it away or use another prefix", e.Key, e.Msg)
}

// IntegrityError: bytes did not match what was promised (hash, size).
type IntegrityError struct{ Msg string }

func (e *IntegrityError) Error() string { return "backup: integrity check failed: " + e.Msg }

// StoreUnavailableError: the destination failed in a way a retry may fix
// (network, 5xx, throttling).
type StoreUnavailableError struct {
	Op  string
	Err error
}

func (e *StoreUnavailableError) Error() string {
	return fmt.Sprintf("backup: %s: destination unavailable: %v; retry later", e.Op, e.Err)
}
func (e *StoreUnavailableError) Unwrap() error { return e.Err }

// StoreFailedError: the destination refused in a way a retry will not fix
// (credentials, missing bucket, permissions).
type StoreFailedError struct {
	Op  string
	Err error
}

func (e *StoreFailedError) Error() string {
	hint := "check the bucket name, endpoint and R2 credentials"
	var pe *fs.PathError
	var le *os.LinkError
	if errors.As(e.Err, &pe) || errors.As(e.Err, &le) {
		hint = "check that the folder can be created and written by this user"
	}
	return fmt.Sprintf("backup: %s: destination refused: %v; %s", e.Op, e.Err, hint)
}
func (e *StoreFailedError) Unwrap() error { return e.Err }

// InternalError is any failure without a class of its own.
type InternalError struct{ Err error }

func (e *InternalError) Error() string { return e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }

// Kind is what the workflow does with an error class.
type Kind int

// Kinds of error class.
const (
	// Permanent: doing the same again fails the same way; the execution
	// stops at the failed step (a redrive reruns it once the cause is fixed).
	Permanent Kind = iota
	// Retryable: the same step may succeed later; Retry blocks back off.
	Retryable
	// Restart: only a new export can go on; the workflow starts one.
	Restart
)

// Class is an error class of the contract with the state machines: the Go
// type name aws-lambda-go reports as errorType, and what the workflow does
// with it.
type Class struct {
	Name string
	Kind Kind
	as   func(error) error
}

// NewClass is the class of errors of type T (a pointer type).
func NewClass[T error](kind Kind) Class {
	return Class{Name: reflect.TypeFor[T]().Elem().Name(), Kind: kind, as: func(err error) error {
		var t T
		if errors.As(err, &t) {
			return t
		}
		return nil
	}}
}

// Find returns the error of this class in err's chain, or nil.
func (c Class) Find(err error) error { return c.as(err) }

// classes are tried in order; the first whose type is in an error's chain
// classifies it.
var classes = []Class{
	NewClass[*d1.RateLimitError](Retryable), NewClass[*d1.UnavailableError](Retryable),
	NewClass[*d1.ExportBusyError](Retryable), NewClass[*d1.DownloadError](Retryable),
	NewClass[*d1.ExportNotRunningError](Restart), NewClass[*d1.DownloadExpiredError](Restart),
	NewClass[*d1.AuthError](Permanent), NewClass[*d1.NotFoundError](Permanent), NewClass[*d1.ExportFailedError](Permanent),
	NewClass[*d1.RequestError](Permanent), NewClass[*d1.QueryError](Permanent), NewClass[*d1.BadAnswerError](Permanent),
	NewClass[*querydump.UnsupportedError](Permanent), NewClass[*ResidencyError](Permanent),
	NewClass[*ExportTimeoutError](Permanent), NewClass[*TooManyRestartsError](Permanent), NewClass[*ConfigError](Permanent),
	NewClass[*ConflictError](Permanent), NewClass[*IntegrityError](Permanent),
	NewClass[*StoreUnavailableError](Retryable), NewClass[*StoreFailedError](Permanent),
	NewClass[*InternalError](Permanent),
}

// Classes lists the error classes the pipeline's steps return.
func Classes() []Class { return slices.Clone(classes) }

// Classified returns the classified error inside err's chain, so that its Go
// type name, which aws-lambda-go reports as errorType and the state machine
// matches, is the class. Errors of no class become *InternalError.
func Classified(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range classes {
		if e := c.as(err); e != nil {
			return e
		}
	}
	return &InternalError{Err: err}
}

// KindOf is what the workflow does with err: the kind of its class, and
// Permanent for an error of no class.
func KindOf(err error) Kind {
	for _, c := range classes {
		if c.as(err) != nil {
			return c.Kind
		}
	}
	return Permanent
}
