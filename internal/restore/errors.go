package restore

import (
	"fmt"
	"strings"
)

// The error types are the classes a caller acts on; a Lambda handler can
// return them as they are (its errorType is the Go type name). All are
// permanent: doing the same again fails the same way. D1 errors (rate
// limits, unavailability, a failed import) come through as the d1 package's
// types.

// NotFoundError: no backup (dump or manifest) under the key.
type NotFoundError struct {
	Key   string
	Store string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("restore: no backup %s in %s; run 'd1backup list' to see the backups there", e.Key, e.Store)
}

// IntegrityError: the stored backup is not what its manifest describes, or
// cannot be read as SQL. Nothing was written anywhere.
type IntegrityError struct {
	Key string
	// Check names what failed: stored_sha256, sql_sha256, manifest or sql.
	Check string
	Msg   string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("restore: backup %s failed its integrity check: %s; nothing was restored", e.Key, e.Msg)
}

// LimitError: D1 would refuse to import the dump. Nothing was uploaded.
type LimitError struct {
	Key      string
	Problems []string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("restore: backup %s cannot be imported into D1: %s; nothing was uploaded (restore it with --to-sqlite instead, or split the statement)", e.Key, strings.Join(e.Problems, "; "))
}

// TargetNotEmptyError: the target already holds tables, and Force was not set.
type TargetNotEmptyError struct {
	Target string
	Tables int
}

func (e *TargetNotEmptyError) Error() string {
	return fmt.Sprintf("restore: target %s already has %d table(s); the dump uses plain CREATE TABLE, so restore into a new database (--create <name>) or pass --force to import on top", e.Target, e.Tables)
}

// TargetError: a target that cannot be used as given (both or neither of
// an existing and a new database, an existing file without Force, ...).
type TargetError struct{ Msg string }

func (e *TargetError) Error() string { return "restore: " + e.Msg }

// LoadError: the dump did not load into SQLite.
type LoadError struct {
	Key string
	Err error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("restore: backup %s does not load into SQLite: %v", e.Key, e.Err)
}
func (e *LoadError) Unwrap() error { return e.Err }

// VerificationError: a verification check failed; the Report says which.
type VerificationError struct {
	Key      string
	Problems []string
}

func (e *VerificationError) Error() string {
	return fmt.Sprintf("restore: backup %s failed verification: %s", e.Key, strings.Join(e.Problems, "; "))
}
