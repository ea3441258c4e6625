package backup

import (
	"errors"
	"fmt"
	"time"

	"github.com/d1backup/d1backup/internal/d1"
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
	return fmt.Sprintf("backup: %s: destination refused: %v; check the bucket name, endpoint and R2 credentials", e.Op, e.Err)
}
func (e *StoreFailedError) Unwrap() error { return e.Err }

// InternalError is any failure without a class of its own.
type InternalError struct{ Err error }

func (e *InternalError) Error() string { return e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }

// Classified returns the classified error inside err's chain, so that its Go
// type name, which aws-lambda-go reports as errorType and the state machine
// matches, is the class. Errors of no class become *InternalError.
func Classified(err error) error {
	if err == nil {
		return nil
	}
	for _, try := range classes {
		if c := try(err); c != nil {
			return c
		}
	}
	return &InternalError{Err: err}
}

func as[T error](err error) error {
	var t T
	if errors.As(err, &t) {
		return t
	}
	return nil
}

var classes = []func(error) error{
	as[*d1.RateLimitError], as[*d1.UnavailableError], as[*d1.ExportBusyError], as[*d1.DownloadError],
	as[*d1.ExportNotRunningError], as[*d1.DownloadExpiredError],
	as[*d1.AuthError], as[*d1.NotFoundError], as[*d1.ExportFailedError], as[*d1.RequestError],
	as[*ExportTimeoutError], as[*TooManyRestartsError], as[*ConfigError], as[*ConflictError],
	as[*IntegrityError], as[*StoreUnavailableError], as[*StoreFailedError], as[*InternalError],
}

// Retryable reports whether running the same step again may succeed.
func Retryable(err error) bool {
	var su *StoreUnavailableError
	return d1.IsRetryable(err) || errors.As(err, &su)
}
