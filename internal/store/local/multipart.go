package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/store"
)

var _ store.Multipart = (*Store)(nil)

// A folder upload is one hidden file beside its key, named
// .<name>.tmp-upload.<id>, into which each part is written at its offset
// (the part size is fixed, so part n starts at (n-1) × part size). The ID
// carries the upload's start time and part size, so a later process needs
// nothing else. Completion checks each part against its ETag (CRC-32C and
// size), cuts the file to length, syncs it and links it into place, which
// fails if the key exists. List skips these files (they are temporary files).
const uploadMarker = ".tmp-upload."

var uploadID = regexp.MustCompile(`^([0-9]{1,19})-[0-9a-f]{16}-([0-9]{1,11})$`)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Put writes through a temporary file ".<name>.tmp-<random digits>";
// ListUploads reports one left by a crash as an upload whose ID is
// putTempID followed by the digits, and AbortUpload removes it.
const (
	putTempMarker = ".tmp-"
	putTempID     = "put-"
)

var putTempRe = regexp.MustCompile(`^\..+\.tmp-[0-9]+$`)

func isPutTemp(name string) bool {
	return putTempRe.MatchString(name) && !strings.Contains(name, uploadMarker)
}

// removePutTemp removes the temporary file of a Put of key.
func (s *Store) removePutTemp(key, suffix string) error {
	final, err := s.path(key)
	if err != nil {
		return fmt.Errorf("local: abort upload %q: %w", key, err)
	}
	if strings.ContainsAny(suffix, "/\\") || suffix == "" {
		return nil
	}
	p := filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+putTempMarker+suffix)
	if !isPutTemp(filepath.Base(p)) {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local: abort upload %q: %w", key, err)
	}
	return nil
}

// parseUploadID returns the start time and part size an ID carries; an ID
// that is not one of ours is an unknown upload.
func parseUploadID(id string) (time.Time, int64, error) {
	m := uploadID.FindStringSubmatch(id)
	if m == nil {
		return time.Time{}, 0, fmt.Errorf("%w: %q is not an upload ID of this store", store.ErrUploadNotFound, id)
	}
	secs, err1 := strconv.ParseInt(m[1], 10, 64)
	ps, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil || ps < store.MinPartSize || ps > store.MaxPartSize {
		return time.Time{}, 0, fmt.Errorf("%w: %q is not an upload ID of this store", store.ErrUploadNotFound, id)
	}
	return time.Unix(secs, 0).UTC(), ps, nil
}

// uploadPath is the file of upload id of key, and the upload's part size.
func (s *Store) uploadPath(key, id string) (string, int64, error) {
	final, err := s.path(key)
	if err != nil {
		return "", 0, err
	}
	_, ps, err := parseUploadID(id)
	if err != nil {
		return "", 0, err
	}
	return filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+uploadMarker+id), ps, nil
}

// CreateUpload creates the upload's file.
func (s *Store) CreateUpload(ctx context.Context, key string, opts store.UploadOptions) (string, error) {
	id, err := s.createUpload(key, opts)
	if err != nil {
		return "", fmt.Errorf("local: create upload %q: %w", key, err)
	}
	return id, nil
}

func (s *Store) createUpload(key string, opts store.UploadOptions) (string, error) {
	if opts.PartSize < store.MinPartSize || opts.PartSize > store.MaxPartSize {
		return "", fmt.Errorf("part size %d must be between %d (5 MiB) and %d (5 GiB)", opts.PartSize, store.MinPartSize, store.MaxPartSize)
	}
	final, err := s.path(key)
	if err != nil {
		return "", err
	}
	if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
		return "", fmt.Errorf("%s is a folder of other keys", final)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := fmt.Sprintf("%d-%s-%d", time.Now().Unix(), hex.EncodeToString(b[:]), opts.PartSize)
	p, _, err := s.uploadPath(key, id)
	if err != nil {
		return "", err
	}
	if _, err := s.mkdirs(filepath.Dir(p)); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	return id, f.Close()
}

// UploadPart writes body at part n's offset in the upload's file.
func (s *Store) UploadPart(ctx context.Context, key, id string, n int, body []byte) (store.Part, error) {
	part, err := s.uploadPart(ctx, key, id, n, body)
	if err != nil {
		return store.Part{}, fmt.Errorf("local: upload part %d of %q: %w", n, key, err)
	}
	return part, nil
}

func (s *Store) uploadPart(ctx context.Context, key, id string, n int, body []byte) (store.Part, error) {
	if err := ctx.Err(); err != nil {
		return store.Part{}, err
	}
	p, ps, err := s.uploadPath(key, id)
	if err != nil {
		return store.Part{}, err
	}
	switch {
	case n < 1 || n > store.MaxParts:
		return store.Part{}, fmt.Errorf("part numbers are 1..%d", store.MaxParts)
	case int64(len(body)) > ps:
		return store.Part{}, fmt.Errorf("%d bytes, more than the upload's part size %d", len(body), ps)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return store.Part{}, missingUpload(err)
	}
	_, err = f.WriteAt(body, int64(n-1)*ps)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return store.Part{}, err
	}
	return store.Part{Number: n, ETag: partETag(body), Size: int64(len(body))}, nil
}

func partETag(b []byte) string { return fmt.Sprintf("crc32c-%08x", crc32.Checksum(b, castagnoli)) }

func missingUpload(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
		return fmt.Errorf("%w: %w", store.ErrUploadNotFound, err)
	}
	return err
}

// CompleteUpload checks every part against its ETag, then moves the file
// into place as Put does: the key appears complete or not at all.
func (s *Store) CompleteUpload(ctx context.Context, key, id string, parts []store.Part) (store.Object, error) {
	obj, err := s.completeUpload(ctx, key, id, parts)
	if err != nil {
		return store.Object{}, fmt.Errorf("local: complete upload %q: %w", key, err)
	}
	return obj, nil
}

func (s *Store) completeUpload(ctx context.Context, key, id string, parts []store.Part) (store.Object, error) {
	p, ps, err := s.uploadPath(key, id)
	if err != nil {
		return store.Object{}, err
	}
	if err := store.CheckParts(parts, ps); err != nil {
		return store.Object{}, err
	}
	final, _ := s.path(key)
	if _, err := os.Lstat(final); err == nil {
		return store.Object{}, store.ErrExists
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return store.Object{}, missingUpload(err)
	}
	defer f.Close()
	size, err := checkParts(ctx, f, parts, ps)
	if err != nil {
		return store.Object{}, err
	}
	if err := f.Truncate(size); err != nil {
		return store.Object{}, err
	}
	if err := f.Sync(); err != nil {
		return store.Object{}, err
	}
	// Take the upload's name away first, so that no later UploadPart of
	// this ID can write into the object once it is linked under key.
	dir := filepath.Dir(p)
	tmp := filepath.Join(dir, "."+filepath.Base(final)+".tmp-"+id)
	if err := os.Rename(p, tmp); err != nil {
		return store.Object{}, missingUpload(err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return store.Object{}, store.ErrExists
		}
		return store.Object{}, err
	}
	if err := os.Remove(tmp); err != nil {
		return store.Object{}, err
	}
	if err := syncDir(dir); err != nil {
		return store.Object{}, err
	}
	fi, err := os.Stat(final)
	if err != nil {
		return store.Object{}, err
	}
	return store.Object{Key: key, Size: size, Modified: fi.ModTime()}, nil
}

// checkParts reads each listed part back and compares it with its ETag;
// it returns the object's size.
func checkParts(ctx context.Context, f *os.File, parts []store.Part, ps int64) (int64, error) {
	buf := make([]byte, 1<<20)
	var size int64
	for _, part := range parts {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		h := crc32.New(castagnoli)
		n, err := io.CopyBuffer(h, io.NewSectionReader(f, int64(part.Number-1)*ps, part.Size), buf)
		if err != nil {
			return 0, err
		}
		if n != part.Size || fmt.Sprintf("crc32c-%08x", h.Sum32()) != part.ETag {
			return 0, fmt.Errorf("part %d does not match its ETag %s (%d bytes)", part.Number, part.ETag, part.Size)
		}
		size += part.Size
	}
	return size, nil
}

// AbortUpload removes the upload's file.
func (s *Store) AbortUpload(ctx context.Context, key, id string) error {
	if suffix, ok := strings.CutPrefix(id, putTempID); ok {
		return s.removePutTemp(key, suffix)
	}
	p, _, err := s.uploadPath(key, id)
	if errors.Is(err, store.ErrUploadNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local: abort upload %q: %w", key, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(missingUpload(err), store.ErrUploadNotFound) {
		return fmt.Errorf("local: abort upload %q: %w", key, err)
	}
	return nil
}

// ListUploads finds the upload files whose keys start with prefix.
func (s *Store) ListUploads(ctx context.Context, prefix string) ([]store.Upload, error) {
	ups, err := s.listUploads(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("local: list uploads %q: %w", prefix, err)
	}
	return ups, nil
}

func (s *Store) listUploads(ctx context.Context, prefix string) ([]store.Upload, error) {
	var ups []store.Upload
	err := s.walk(ctx, prefix, func(p string, d fs.DirEntry) error {
		name, id, ok := strings.Cut(d.Name(), uploadMarker)
		var began time.Time
		switch {
		case ok && strings.HasPrefix(name, "."):
			var err error
			if began, _, err = parseUploadID(id); err != nil {
				return nil // not ours
			}
		case isPutTemp(d.Name()):
			// A Put's temporary file, left by a crash: listed as an upload
			// so that retention removes it once stale.
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			i := strings.LastIndex(d.Name(), putTempMarker)
			name, id = d.Name()[:i], d.Name()[i+len(putTempMarker):]
			began, id = fi.ModTime(), putTempID+id
		default:
			return nil
		}
		rel, err := filepath.Rel(s.dir, filepath.Join(filepath.Dir(p), name[1:]))
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, prefix) && store.CheckKey(key) == nil {
			ups = append(ups, store.Upload{Key: key, ID: id, Initiated: began})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(ups, func(i, j int) bool {
		if ups[i].Key != ups[j].Key {
			return ups[i].Key < ups[j].Key
		}
		return ups[i].Initiated.Before(ups[j].Initiated)
	})
	return ups, nil
}
