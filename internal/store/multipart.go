package store

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxParts is the most parts one upload may have (S3's and R2's limit).
const MaxParts = 10000

// ErrUploadNotFound is returned for an upload ID that names no upload in
// progress: it was completed or aborted, or the bucket's lifecycle rule
// expired it (R2 aborts incomplete uploads after 7 days).
var ErrUploadNotFound = errors.New("multipart upload not found")

// Multipart is a store that builds one object from parts uploaded over
// time, possibly by several processes one after another: the store step
// writes every dump this way, so that an upload interrupted by a Lambda
// deadline, a crash or Ctrl-C is continued by the next run from its
// checkpoint. Every backend implements it and passes storetest's multipart
// cases.
//
// R2's rules hold for every backend, so an upload that works on one works
// on all: parts are numbered 1..n with no gaps, every part but the last has
// the same size, n ≤ MaxParts. Errors are classified as for Store (wrapping
// ErrTransient when a retry may help).
type Multipart interface {
	// CreateUpload starts an upload for key. Nothing is visible under key
	// (to Stat, Get or List) until CompleteUpload succeeds. The ID it returns
	// is opaque and carries no secret; it is all a later process needs,
	// with key, to continue the upload.
	CreateUpload(ctx context.Context, key string, opts UploadOptions) (id string, err error)
	// UploadPart stores body as part number n (1 ≤ n ≤ MaxParts) of the
	// upload and returns it as CompleteUpload takes it. Uploading a number
	// again replaces that part. body is not retained after UploadPart
	// returns. An unknown upload fails wrapping ErrUploadNotFound.
	UploadPart(ctx context.Context, key, id string, n int, body []byte) (Part, error)
	// CompleteUpload makes the object under key from parts, which must be
	// numbers 1..len(parts) in order, each as UploadPart returned it, all of
	// the upload's part size except the last (not larger; empty only if it
	// is the only one); parts uploaded but not listed are discarded. It never
	// overwrites: if key holds an object it fails wrapping ErrExists and
	// leaves both that object and the upload as they are (the caller
	// decides, then aborts). A part whose ETag or size does not match what
	// was uploaded fails the completion. An unknown upload fails wrapping
	// ErrUploadNotFound.
	CompleteUpload(ctx context.Context, key, id string, parts []Part) (Object, error)
	// AbortUpload discards the upload and its parts. Aborting an upload
	// that is gone is not an error.
	AbortUpload(ctx context.Context, key, id string) error
	// ListUploads returns the uploads in progress whose keys start with
	// prefix, sorted by key, then by when they began. Retention aborts the
	// stale ones of d1backup's own keys.
	ListUploads(ctx context.Context, prefix string) ([]Upload, error)
}

// UploadOptions describe an object being uploaded in parts.
type UploadOptions struct {
	ContentType string
	// PartSize is the size of every part but the last. Backends that
	// place parts by offset (a folder) rely on it; S3 bounds it to
	// MinPartSize..MaxPartSize.
	PartSize int64
}

// Part sizes S3 and R2 accept for every part but the last.
const (
	MinPartSize int64 = 5 << 20
	MaxPartSize int64 = 5 << 30
)

// Part is one uploaded part.
type Part struct {
	Number int    `json:"number"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
}

// Upload is an upload in progress.
type Upload struct {
	Key       string
	ID        string
	Initiated time.Time
}

// CheckParts holds a completion's part list to the rules every backend
// enforces: numbers 1..n in order, n ≤ MaxParts, every part partSize bytes
// but the last, which is no larger and empty only when alone.
func CheckParts(parts []Part, partSize int64) error {
	switch {
	case len(parts) == 0:
		return errors.New("no parts")
	case len(parts) > MaxParts:
		return fmt.Errorf("%d parts, more than %d", len(parts), MaxParts)
	case partSize <= 0:
		return fmt.Errorf("part size %d", partSize)
	}
	for i, p := range parts {
		last := i == len(parts)-1
		switch {
		case p.Number != i+1:
			return fmt.Errorf("part %d is numbered %d: parts must be 1..%d in order", i+1, p.Number, len(parts))
		case p.ETag == "":
			return fmt.Errorf("part %d has no ETag", p.Number)
		case !last && p.Size != partSize:
			return fmt.Errorf("part %d has %d bytes; every part but the last must have %d (R2 rejects unequal parts)", p.Number, p.Size, partSize)
		case last && (p.Size > partSize || p.Size < 0 || (p.Size == 0 && len(parts) > 1)):
			return fmt.Errorf("last part %d has %d bytes; it must have 1..%d", p.Number, p.Size, partSize)
		}
	}
	return nil
}

// MultipartETag is the ETag S3 and R2 give the object completed from parts
// whose ETags are the hex MD5 of each part: the MD5 of the parts' MD5s,
// then "-" and the number of parts. ok is false when a part's ETag is not
// an MD5, as a folder's are not.
func MultipartETag(parts []Part) (etag string, ok bool) {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil || len(b) != md5.Size {
			return "", false
		}
		h.Write(b)
	}
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(h.Sum(nil)), len(parts)), true
}
