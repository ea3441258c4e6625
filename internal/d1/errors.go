package d1

import (
	"errors"
	"fmt"
	"time"
)

// The error types below are the classes a caller acts on. Each is its own Go
// type because aws-lambda-go reports a failed invocation's errorType as the Go
// type name, and the state machines match on those names.
//
// Retryable: RateLimitError, UnavailableError, ExportBusyError, DownloadError.
// Restart the export: ExportNotRunningError, DownloadExpiredError.
// Permanent: AuthError, NotFoundError, ExportFailedError.

// RateLimitError is HTTP 429: Cloudflare allows 1200 requests per 5 minutes.
type RateLimitError struct {
	Op         string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("d1: %s: rate limited by Cloudflare (HTTP 429); retry after %s", e.Op, e.RetryAfter)
}

// UnavailableError is a 5xx, a reset connection or a timeout.
type UnavailableError struct {
	Op  string
	Err error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("d1: %s: Cloudflare API unavailable: %v; retry later", e.Op, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// ExportBusyError means another export of the same database is running.
type ExportBusyError struct {
	Op       string
	Database string
	Message  string
}

func (e *ExportBusyError) Error() string {
	return fmt.Sprintf("d1: %s: database %s is busy with another export (%s); wait for it to finish and retry", e.Op, e.Database, e.Message)
}

// ExportNotRunningError means the export behind a bookmark is no longer
// running (finished long ago, or cancelled because polling stopped). Only a
// new export can go on.
type ExportNotRunningError struct {
	Op       string
	Database string
	Bookmark string
	Message  string
}

func (e *ExportNotRunningError) Error() string {
	return fmt.Sprintf("d1: %s: export of database %s at bookmark %s is not running (%s); start a new export", e.Op, e.Database, e.Bookmark, e.Message)
}

// DownloadExpiredError means the signed dump URL was refused (it lives one hour).
type DownloadExpiredError struct {
	Op         string
	StatusCode int
}

func (e *DownloadExpiredError) Error() string {
	return fmt.Sprintf("d1: %s: signed dump URL refused (HTTP %d): it has expired or is invalid; start a new export", e.Op, e.StatusCode)
}

// DownloadError is a dump download that failed or ended early; the URL is
// still good, so downloading again may work.
type DownloadError struct {
	Op  string
	Err error
}

func (e *DownloadError) Error() string { return fmt.Sprintf("d1: %s: %v", e.Op, e.Err) }
func (e *DownloadError) Unwrap() error { return e.Err }

// ExportFailedError is an export that ended with status "error", for example
// because the database holds a virtual table.
type ExportFailedError struct {
	Database string
	Message  string
}

func (e *ExportFailedError) Error() string {
	hint := ""
	if IsVirtualTableRefusal(e.Message) {
		hint = "; D1 cannot export databases with virtual tables (e.g. FTS5): back them up through the query API instead (--method query or auto, D1BACKUP_METHOD)"
	}
	return fmt.Sprintf("d1: export of database %s failed: %s%s", e.Database, e.Message, hint)
}

// AuthError is a rejected API token (HTTP 401/403 from the API).
type AuthError struct {
	Op         string
	StatusCode int
	Message    string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("d1: %s: Cloudflare rejected the API token (HTTP %d: %s); check CLOUDFLARE_API_TOKEN and that it has Account · D1 · Edit", e.Op, e.StatusCode, e.Message)
}

// NotFoundError is an unknown account or database.
type NotFoundError struct {
	Op       string
	Database string
	Message  string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("d1: %s: database %q not found (%s); check the name or UUID and CLOUDFLARE_ACCOUNT_ID", e.Op, e.Database, e.Message)
}

// IsRetryable reports whether doing the same call again may succeed.
func IsRetryable(err error) bool {
	var (
		rl *RateLimitError
		un *UnavailableError
		bu *ExportBusyError
		dl *DownloadError
	)
	return errors.As(err, &rl) || errors.As(err, &un) || errors.As(err, &bu) || errors.As(err, &dl)
}

// NeedsNewExport reports whether only a new export can recover.
func NeedsNewExport(err error) bool {
	var (
		nr *ExportNotRunningError
		ex *DownloadExpiredError
	)
	return errors.As(err, &nr) || errors.As(err, &ex)
}
