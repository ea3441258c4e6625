// Package local keeps backups in a folder: the CLI's destination when no
// bucket is configured, and the simplest implementation of store.Store.
//
// Writes are atomic and never clobber: Put writes a hidden temporary file in
// the destination folder, syncs it, and hard-links it into place, which
// fails if the name exists. A crash leaves at most a temporary file, which
// List ignores.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

// Store is a store.Store in a folder. Keys map to paths below it; as with
// most S3 gateways over a filesystem, keys "a/b" and "a/b/c" cannot coexist.
type Store struct {
	dir string
}

var _ store.Store = (*Store)(nil)

// New returns a store in dir. The folder is created by the first Put, so
// listing or reading a folder that does not exist changes nothing on disk.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("local: folder is required")
	}
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("local: %s is not a folder", dir)
	}
	return &Store{dir: dir}, nil
}

// String is the folder's path.
func (s *Store) String() string { return s.dir }

// isTemp reports whether a file name is one of Put's temporary files.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// path checks key and returns its file path.
func (s *Store) path(key string) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	if isTemp(path.Base(key)) {
		return "", fmt.Errorf("invalid key %q: name is reserved for temporary files", key)
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// Put writes r to key through a temporary file and a hard link, so the key
// appears complete or not at all and an existing key is never replaced.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.Object, error) {
	obj, err := s.put(ctx, key, r, opts)
	if err != nil {
		return store.Object{}, fmt.Errorf("local: put %q: %w", key, err)
	}
	return obj, nil
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.Object, error) {
	final, err := s.path(key)
	if err != nil {
		return store.Object{}, err
	}
	// Fail before copying anything when the key is taken; Link below still
	// decides a race.
	if fi, err := os.Lstat(final); err == nil {
		if fi.IsDir() {
			return store.Object{}, fmt.Errorf("%s is a folder of other keys", final)
		}
		if !opts.Replace {
			return store.Object{}, store.ErrExists
		}
	}
	dir := filepath.Dir(final)
	created, err := s.mkdirs(dir)
	if err != nil {
		return store.Object{}, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return store.Object{}, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful Link the name is no longer needed either
	n, err := copyBody(ctx, f, r, opts.Size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return store.Object{}, err
	}
	if opts.Replace {
		// rename replaces atomically; the deferred Remove then finds nothing.
		if err := os.Rename(tmp, final); err != nil {
			return store.Object{}, err
		}
	} else {
		if err := os.Link(tmp, final); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return store.Object{}, store.ErrExists
			}
			return store.Object{}, err
		}
		if err := os.Remove(tmp); err != nil {
			return store.Object{}, err
		}
	}
	// Make the new name, and any folders created for it, durable.
	for _, d := range append([]string{dir}, parents(created)...) {
		if err := syncDir(d); err != nil {
			return store.Object{}, err
		}
	}
	fi, err := os.Stat(final)
	if err != nil {
		return store.Object{}, err
	}
	return store.Object{Key: key, Size: n, Modified: fi.ModTime()}, nil
}

// copyBody copies r to w until EOF, stopping when ctx ends, and checks the
// length against size unless size is negative.
func copyBody(ctx context.Context, w io.Writer, r io.Reader, size int64) (int64, error) {
	src := stream.WithContext(ctx, r)
	var lr io.Reader = src
	if size >= 0 {
		lr = io.LimitReader(src, size+1) // one byte more tells a longer body
	}
	n, err := io.Copy(w, lr)
	if err != nil {
		return n, err
	}
	switch {
	case size >= 0 && n > size:
		return n, fmt.Errorf("body is longer than the %d bytes given as its size", size)
	case size >= 0 && n < size:
		return n, fmt.Errorf("body ended after %d of the %d bytes given as its size: %w", n, size, io.ErrUnexpectedEOF)
	}
	return n, nil
}

// mkdirs creates dir and its missing parents (the store's folder too, on
// the first Put) and returns the folders it created, deepest first.
func (s *Store) mkdirs(dir string) ([]string, error) {
	var created []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return created, nil
}

// parents returns the parent folder of each of dirs.
func parents(dirs []string) []string {
	ps := make([]string, len(dirs))
	for i, d := range dirs {
		ps[i] = filepath.Dir(d)
	}
	return ps
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get opens the file under key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("local: get %q: %w", key, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("local: get %q: %w", key, notFound(err))
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("local: get %q: %w", key, store.ErrNotFound)
	}
	return f, nil
}

// Stat describes the file under key.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	p, err := s.path(key)
	if err != nil {
		return store.Object{}, fmt.Errorf("local: stat %q: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return store.Object{}, fmt.Errorf("local: stat %q: %w", key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return store.Object{}, fmt.Errorf("local: stat %q: %w", key, store.ErrNotFound)
	}
	return store.Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// errNotDir is what a path through a file fails with.
var errNotDir error = syscall.ENOTDIR

// notFound makes err wrap store.ErrNotFound when the file is missing. A
// path through a file ("a/b" when "a" is a file) is missing too.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	return err
}

// List returns the files whose keys start with prefix, sorted, without
// Put's temporary files.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	objs, err := s.list(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("local: list %q: %w", prefix, err)
	}
	return objs, nil
}

func (s *Store) list(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	err := s.walk(ctx, prefix, func(p string, d fs.DirEntry) error {
		if isTemp(d.Name()) {
			return nil
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while walking
		} else if err != nil {
			return err
		}
		objs = append(objs, store.Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Walk order is per folder ("a/x" before "a-b"); keys sort bytewise.
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

// walk calls visit for every regular file in the deepest folder a key
// prefix names, and below; a folder that does not exist holds nothing.
func (s *Store) walk(ctx context.Context, prefix string, visit func(p string, d fs.DirEntry) error) error {
	start := s.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		if err := store.CheckKey(prefix[:i]); err != nil {
			return err
		}
		start = filepath.Join(s.dir, filepath.FromSlash(prefix[:i]))
	}
	return filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return visit(p, d)
	})
}

// Delete removes the file under key; a missing one is not an error. Folders
// left empty are kept: removing them would race with a concurrent Put.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("local: delete %q: %w", key, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(notFound(err), store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("local: delete %q: %w", key, err)
	}
	if fi.IsDir() {
		return nil // a folder of other keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local: delete %q: %w", key, err)
	}
	return nil
}
