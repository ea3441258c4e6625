package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

// CheckpointSuffix ends the key of an unfinished store's checkpoint, kept
// beside the dump it is building: <dump key>.checkpoint.
const CheckpointSuffix = ".checkpoint"

// CheckpointKey is the key of the checkpoint of the dump under dumpKey.
func CheckpointKey(dumpKey string) string { return dumpKey + CheckpointSuffix }

// CheckpointFormat is the checkpoint layout version.
const CheckpointFormat = 1

// StoreCheckpoint is what the workflow state carries of an unfinished
// store step: where its checkpoint is and how far it got. It holds no
// secret (the checkpoint itself, with the upload and the hash states, is
// in the bucket), so it may show in execution history.
type StoreCheckpoint struct {
	// Key is the checkpoint object's key.
	Key string `json:"key"`
	// Run identifies the backup that owns the upload; another run's
	// checkpoint under the same key means that run took the upload over.
	Run string `json:"run"`
	// SQLOffset is how much of the dump is stored (or in the checkpoint's
	// tail); SQLTotal the dump's size (-1 if unknown).
	SQLOffset   int64 `json:"sql_offset"`
	SQLTotal    int64 `json:"sql_total"`
	Parts       int   `json:"parts"`
	StoredBytes int64 `json:"stored_bytes"`
	// Invocations counts the store steps that worked on this upload.
	Invocations int `json:"invocations"`
	// URLOffset is SQLOffset when the current dump URL was first used: a
	// new export started after progress past it is not a failure.
	URLOffset int64 `json:"url_offset"`
	// Notes say what happened on the way (a new URL, a fresh start).
	Notes []string `json:"notes,omitempty"`
}

// checkpoint is the object under CheckpointKey: everything needed to go on
// exactly where a store step stopped. The stored stream up to the cut is
// parts 1..len(Parts) (uploaded) followed by the tail (in the object); the
// compression stream ended at the cut, so the next one starts a new gzip
// member or zstd frame; the age stream, if any, goes on from its sealed
// state.
type checkpoint struct {
	Format            int          `json:"format"`
	Run               string       `json:"run"`
	DatabaseID        string       `json:"database_id"`
	DatabaseName      string       `json:"database_name"`
	Bookmark          string       `json:"bookmark"`
	Key               string       `json:"key"`
	Compression       string       `json:"compression"`
	Encrypted         bool         `json:"encrypted"`
	ExportStartedAt   time.Time    `json:"export_started_at"`
	ExportCompletedAt *time.Time   `json:"export_completed_at,omitempty"`
	UploadID          string       `json:"upload_id,omitempty"`
	PartSize          int64        `json:"part_size"`
	Parts             []store.Part `json:"parts"`
	SQLOffset         int64        `json:"sql_offset"`
	SQLTotal          int64        `json:"sql_total"`
	SQLState          []byte       `json:"sql_sha256_state"`
	StoredBytes       int64        `json:"stored_bytes"`
	StoredState       []byte       `json:"stored_sha256_state"`
	TailBytes         int64        `json:"tail_bytes"`
	TailSHA256        string       `json:"tail_sha256"`
	// Overlap is the SHA-256 of the OverlapBytes of SQL before SQLOffset:
	// a resumed download starts that far back and must match it, or it is
	// not the same dump.
	OverlapBytes  int64  `json:"overlap_bytes"`
	OverlapSHA256 string `json:"overlap_sha256"`
	Segments      int    `json:"segments"`
	// SealedURL is the dump's signed URL and SealedAge the age stream's
	// state, both sealed with the credentials-derived key.
	SealedURL   string   `json:"sealed_url,omitempty"`
	SealedAge   string   `json:"sealed_age,omitempty"`
	Invocations int      `json:"invocations"`
	URLOffset   int64    `json:"url_offset"`
	Notes       []string `json:"notes,omitempty"`
	// Recipients are the age recipients the stream is encrypted to.
	Recipients []string  `json:"recipients,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Final is set once every part is uploaded, just before the upload is
	// completed: what the completed object holds, as streamed and hashed.
	// A run that finds the object without its manifest, and this, can vouch
	// for the object by its stored SHA-256 (even encrypted).
	Final *final `json:"final,omitempty"`

	tail []byte
}

// final is what a completed upload holds.
type final struct {
	SQLBytes     int64  `json:"sql_bytes"`
	SQLSHA256    string `json:"sql_sha256"`
	StoredBytes  int64  `json:"stored_bytes"`
	StoredSHA256 string `json:"stored_sha256"`
}

// overlapMax is how much SQL before the offset a resumed download re-reads
// to prove it is the same dump.
const overlapMax = 64 << 10

// maxCheckpointHeader bounds the JSON part of a checkpoint (the part list
// of 10,000 parts is the bulk).
const maxCheckpointHeader = 4 << 20

var (
	runRe    = regexp.MustCompile(`^[0-9a-f]{16,64}$`)
	hex64Re  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	uploadRe = regexp.MustCompile(`^[\x21-\x7e]+$`)
)

// BadCheckpointError: the object under a checkpoint's key is not a usable
// checkpoint. The store step then starts over.
type BadCheckpointError struct {
	Key string
	Msg string
}

func (e *BadCheckpointError) Error() string {
	return fmt.Sprintf("backup: %s is not a usable d1backup checkpoint: %s", e.Key, e.Msg)
}

// ref is what the workflow state carries of c.
func (c *checkpoint) ref() *StoreCheckpoint {
	return &StoreCheckpoint{
		Key: CheckpointKey(c.Key), Run: c.Run, SQLOffset: c.SQLOffset, SQLTotal: c.SQLTotal,
		Parts: len(c.Parts), StoredBytes: c.StoredBytes, Invocations: c.Invocations,
		URLOffset: c.URLOffset, Notes: c.Notes,
	}
}

// marshal is the JSON header on one line, then the tail's bytes.
func (c *checkpoint) marshal() ([]byte, error) {
	c.Format = CheckpointFormat
	c.TailBytes = int64(len(c.tail))
	sum := sha256.Sum256(c.tail)
	c.TailSHA256 = hex.EncodeToString(sum[:])
	hdr, err := json.Marshal(c)
	if err != nil {
		return nil, &InternalError{Err: err}
	}
	out := make([]byte, 0, len(hdr)+1+len(c.tail))
	out = append(append(append(out, hdr...), '\n'), c.tail...)
	return out, nil
}

// writeCheckpoint replaces the checkpoint atomically.
func writeCheckpoint(ctx context.Context, st store.Store, c *checkpoint) error {
	data, err := c.marshal()
	if err != nil {
		return err
	}
	key := CheckpointKey(c.Key)
	if _, err := st.Put(ctx, key, bytes.NewReader(data), store.PutOptions{ContentType: "application/octet-stream", Size: int64(len(data)), Replace: true}); err != nil {
		return storeError("write checkpoint "+key, err)
	}
	return nil
}

// readCheckpoint loads and checks the checkpoint under key. A missing one
// is (nil, nil); one that is not usable is a *BadCheckpointError.
func readCheckpoint(ctx context.Context, st store.Store, key string) (*checkpoint, error) {
	rc, err := st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeError("read checkpoint "+key, err)
	}
	defer rc.Close()
	c, err := parseCheckpoint(key, bufio.NewReader(rc))
	if err != nil && !errors.As(err, new(*BadCheckpointError)) {
		return nil, storeError("read checkpoint "+key, err)
	}
	return c, err
}

func parseCheckpoint(key string, r *bufio.Reader) (*checkpoint, error) {
	bad := func(format string, a ...any) error {
		return &BadCheckpointError{Key: key, Msg: fmt.Sprintf(format, a...)}
	}
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxCheckpointHeader {
			return nil, bad("header longer than %d bytes", maxCheckpointHeader)
		}
		if err == nil {
			break
		}
		if err == io.EOF {
			return nil, bad("no header line")
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
	var c checkpoint
	if err := json.Unmarshal(line, &c); err != nil {
		return nil, bad("header is not JSON: %v", err)
	}
	if err := c.check(key); err != nil {
		return nil, bad("%v", err)
	}
	c.tail = make([]byte, c.TailBytes)
	if _, err := io.ReadFull(r, c.tail); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, bad("tail shorter than its %d bytes", c.TailBytes)
		}
		return nil, err
	}
	if n, _ := io.CopyN(io.Discard, r, 1); n != 0 {
		return nil, bad("bytes after the %d-byte tail", c.TailBytes)
	}
	if sum := sha256.Sum256(c.tail); hex.EncodeToString(sum[:]) != c.TailSHA256 {
		return nil, bad("tail does not match its SHA-256")
	}
	return &c, nil
}

// check holds a checkpoint's header to its key and to itself: it comes
// from the bucket, so anything may be in it.
func (c *checkpoint) check(key string) error {
	k, ok := ParseKey(key)
	switch {
	case c.Format != CheckpointFormat:
		return fmt.Errorf("format %d (this version reads %d)", c.Format, CheckpointFormat)
	case !ok || !k.Checkpoint || k.Dump != c.Key:
		return fmt.Errorf("it describes %q, not the dump of its key", c.Key)
	case k.DatabaseID != c.DatabaseID || k.Bookmark != c.Bookmark || k.Compression != c.Compression || k.Encrypted != c.Encrypted:
		return fmt.Errorf("its fields do not match its key")
	case !runRe.MatchString(c.Run):
		return fmt.Errorf("run %q", c.Run)
	case c.PartSize < store.MinPartSize || c.PartSize > store.MaxPartSize:
		return fmt.Errorf("part size %d", c.PartSize)
	case len(c.Parts) > store.MaxParts:
		return fmt.Errorf("%d parts", len(c.Parts))
	case len(c.UploadID) > 1024, len(c.Parts) > 0 && !uploadRe.MatchString(c.UploadID), c.UploadID != "" && !uploadRe.MatchString(c.UploadID):
		return fmt.Errorf("upload ID %q", c.UploadID)
	case c.TailBytes < 0 || c.TailBytes >= c.PartSize || (c.Final != nil && c.TailBytes != 0):
		return fmt.Errorf("tail of %d bytes with parts of %d", c.TailBytes, c.PartSize)
	case c.SQLOffset < 0 || c.SQLTotal < -1 || (c.SQLTotal >= 0 && c.SQLOffset > c.SQLTotal):
		return fmt.Errorf("offset %d of %d", c.SQLOffset, c.SQLTotal)
	case c.OverlapBytes != min(c.SQLOffset, overlapMax) || !hex64Re.MatchString(c.OverlapSHA256):
		return fmt.Errorf("overlap of %d bytes at offset %d", c.OverlapBytes, c.SQLOffset)
	case !hex64Re.MatchString(c.TailSHA256):
		return fmt.Errorf("tail SHA-256 %q", c.TailSHA256)
	case c.Segments < 1 || c.Invocations < 0 || c.URLOffset < 0 || c.URLOffset > c.SQLOffset:
		return fmt.Errorf("segments %d, invocations %d, URL offset %d", c.Segments, c.Invocations, c.URLOffset)
	case c.Encrypted && c.SealedAge == "" && c.Final == nil:
		return fmt.Errorf("encrypted, without the encryption's state")
	case len(c.Notes) > 100:
		return fmt.Errorf("%d notes", len(c.Notes))
	}
	if err := c.checkParts(); err != nil {
		return err
	}
	if _, err := stream.ResumeDigest(c.SQLState, c.SQLOffset); err != nil {
		return fmt.Errorf("SQL hash: %v", err)
	}
	if _, err := stream.ResumeDigest(c.StoredState, c.StoredBytes); err != nil {
		return fmt.Errorf("stored hash: %v", err)
	}
	return nil
}

// checkParts holds the part list to the sizes: all parts full and a tail
// while the upload runs; at the end (Final) R2's rules and the totals.
func (c *checkpoint) checkParts() error {
	if c.Final != nil {
		if err := store.CheckParts(c.Parts, c.PartSize); err != nil || c.UploadID == "" {
			return fmt.Errorf("final parts: %v", err)
		}
		var n int64
		for _, p := range c.Parts {
			n += p.Size
		}
		f := c.Final
		if n != c.StoredBytes || f.StoredBytes != n || f.SQLBytes != c.SQLOffset || !hex64Re.MatchString(f.SQLSHA256) || !hex64Re.MatchString(f.StoredSHA256) {
			return fmt.Errorf("final state %+v does not match %d stored bytes at offset %d", *f, n, c.SQLOffset)
		}
		return nil
	}
	for i, p := range c.Parts {
		if p.Number != i+1 || p.Size != c.PartSize || p.ETag == "" || len(p.ETag) > 256 {
			return fmt.Errorf("part %d: %+v", i+1, p)
		}
	}
	if c.StoredBytes != int64(len(c.Parts))*c.PartSize+c.TailBytes {
		return fmt.Errorf("%d stored bytes are not %d parts of %d plus a %d-byte tail", c.StoredBytes, len(c.Parts), c.PartSize, c.TailBytes)
	}
	return nil
}

// uploadOf reads just enough of the checkpoint under key, usable or not, to
// abort its upload: the upload ID, when the header says it belongs to the
// dump the key names (an ID for another key is never used).
func uploadOf(ctx context.Context, st store.Store, key string) (dump, id string) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return "", ""
	}
	defer rc.Close()
	line, err := bufio.NewReader(io.LimitReader(rc, maxCheckpointHeader)).ReadBytes('\n')
	if err != nil {
		return "", ""
	}
	var hdr struct {
		Key      string `json:"key"`
		UploadID string `json:"upload_id"`
	}
	if json.Unmarshal(line, &hdr) != nil || CheckpointKey(hdr.Key) != key || len(hdr.UploadID) > 1024 || !uploadRe.MatchString(hdr.UploadID) {
		return "", ""
	}
	return hdr.Key, hdr.UploadID
}
