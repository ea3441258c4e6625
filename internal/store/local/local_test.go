package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
	"github.com/d1backup/d1backup/internal/store/storetest"
)

func open(t *testing.T) store.Store {
	s, err := local.New(filepath.Join(t.TempDir(), "backups"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open, storetest.Options{
		// A failed Put must not leave its temporary file behind either.
		NoPartialUploads: func(t *testing.T, s store.Store, key string) {
			t.Helper()
			filepath.WalkDir(s.String(), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					t.Errorf("file left behind: %s", p)
				}
				return nil
			})
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			other, err := local.New(s.String())
			if err != nil {
				t.Fatal(err)
			}
			return other
		},
	})
}

// Reading a folder that does not exist changes nothing on disk; the first
// Put creates it.
func TestFolderCreatedByFirstPut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), dir; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	ctx := context.Background()
	if objs, err := s.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Errorf("List of a missing folder = %v, %v; want nothing", objs, err)
	}
	if _, err := s.Get(ctx, "x/y"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get in a missing folder = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reading created %s (%v)", filepath.Dir(dir), err)
	}
	if _, err := s.Put(ctx, "x/y", strings.NewReader("data"), store.PutOptions{Size: 4}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("folder not created by Put: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := local.New(file); err == nil {
		t.Error("New(a file) succeeded, want an error")
	}
	if _, err := local.New(""); err == nil {
		t.Error(`New("") succeeded, want an error`)
	}
}

// A crash between writing and linking leaves a temporary file; List must
// not report it, and it must not block a later Put of the same key.
func TestListSkipsTemporaryFiles(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	tmp := filepath.Join(s.String(), "db", ".dump.sql.tmp-123456")
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "db/dump.sql", strings.NewReader("whole"), store.PutOptions{Size: 5}); err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Key != "db/dump.sql" {
		t.Errorf("List = %v, want only db/dump.sql", objs)
	}
	if _, err := s.Put(ctx, "db/.dump.sql.tmp-1", strings.NewReader("x"), store.PutOptions{Size: 1}); err == nil {
		t.Error("Put of a temporary file's name succeeded, want an error")
	}
}

// A key whose path is taken by a folder is not an existing object.
func TestPutOverFolder(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "a/b", strings.NewReader("x"), store.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Put(ctx, "a", strings.NewReader("y"), store.PutOptions{Size: 1})
	if err == nil || errors.Is(err, store.ErrExists) {
		t.Errorf("Put over a folder: err = %v, want a non-ErrExists error", err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Errorf("Delete of a folder's name: %v, want nil", err)
	}
	if _, err := s.Stat(ctx, "a/b"); err != nil {
		t.Errorf("Delete of the folder's name removed what is inside: %v", err)
	}
}

// A Put cut short by a crash leaves its temporary file: it is listed as an
// upload in progress (so retention can remove it once stale) and removed
// by AbortUpload; a file that only looks like one is not touched.
func TestPutTempFilesAreUploads(t *testing.T) {
	dir := t.TempDir()
	s, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	temp := filepath.Join(dir, "db", ".a.tmp-b.sql.tmp-123456")
	other := filepath.Join(dir, "db", ".notes.tmp-x")
	for _, p := range []string{temp, other} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ups, err := s.ListUploads(ctx, "db/")
	if err != nil || len(ups) != 1 || ups[0].Key != "db/a.tmp-b.sql" {
		t.Fatalf("ListUploads = %+v, %v; want the Put's temporary file of db/a.tmp-b.sql", ups, err)
	}
	if err := s.AbortUpload(ctx, ups[0].Key, ups[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(temp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not a Put's temporary file was removed: %v", err)
	}
}
