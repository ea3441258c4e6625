// Package store defines where backups are kept. Backends live in
// subpackages (r2 for R2 and other S3-compatible servers, local for a folder)
// and all pass the conformance suite in storetest.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrExists is returned by Put when the key already holds an object. Put
// never overwrites: backups are immutable and a rerun must not clobber one.
var ErrExists = errors.New("object already exists")

// ErrNotFound is returned for a key that holds no object.
var ErrNotFound = errors.New("object not found")

// ErrTransient marks a failure that may pass if the operation is tried
// again later (network, timeouts, 5xx, throttling). Backends classify their
// own errors once, where they know what the server meant, by wrapping them
// with Transient; every other failure (credentials, permissions, a missing
// bucket, a bad request) is permanent. Callers ask IsTransient.
var ErrTransient = errors.New("transient failure")

// Transient marks err as transient; nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transient{err}
}

type transient struct{ err error }

func (t *transient) Error() string        { return t.err.Error() }
func (t *transient) Unwrap() error        { return t.err }
func (t *transient) Is(target error) bool { return target == ErrTransient }

// IsTransient reports whether a store error may pass on a later retry.
func IsTransient(err error) bool { return errors.Is(err, ErrTransient) }

// Store is a destination for backups. Keys are slash-separated and relative
// to the store's root (a bucket prefix or a folder); every backend rejects
// keys that fail CheckKey, so a key valid for one is valid for all.
type Store interface {
	// Errors that may pass on a retry wrap ErrTransient (see Transient);
	// every other error is permanent.
	//
	// Put writes everything r yields under key. The object becomes visible
	// under key only once complete: if r returns an error, ctx ends, or the
	// upload fails, nothing is left under key (and no partial upload lingers).
	// If key already exists, Put returns an error wrapping ErrExists and leaves
	// the existing object untouched. Memory use is bounded whatever r's length.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Object, error)
	// Get opens the object under key; errors wrap ErrNotFound when absent.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object under key; errors wrap ErrNotFound when absent.
	Stat(ctx context.Context, key string) (Object, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// String names the destination for people (r2://bucket/prefix, a path);
	// it never contains credentials.
	String() string
}

// PutOptions describe an object being written.
type PutOptions struct {
	ContentType string
	// Size is the exact length of the body when known, or -1.
	Size int64
	// Replace lets Put replace an existing object, still atomically: readers
	// see the old object or the new one. Only small metadata (a manifest
	// gaining its verification) is ever replaced; dumps never are.
	Replace bool
}

// Object describes a stored object.
type Object struct {
	Key      string
	Size     int64
	Modified time.Time
	// ETag is the server's entity tag from Stat, when it keeps one (S3:
	// the MD5 of a single PUT, or of the parts' MD5s followed by "-<parts>"
	// for a completed upload; see MultipartETag); "" otherwise.
	ETag string
}
