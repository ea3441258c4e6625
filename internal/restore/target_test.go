package restore_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/d1backup/d1backup/internal/restore"
)

// TestToSQLiteRefusesWhatIsNoRegularFile: --to-sqlite never writes
// through a directory, device, FIFO or a symbolic link to one (with or
// without --force); a link to a regular file gets that file replaced.
func TestToSQLiteRefusesWhatIsNoRegularFile(t *testing.T) {
	t.Parallel()
	st, tmp, outside := hostileStore(t)
	key := testKey("ok", "none")
	putBackup(t, st, key, "CREATE TABLE t (a);\nINSERT INTO t VALUES('restored');\n")
	src := restore.Source{Store: st, Key: key}
	fifo := filepath.Join(outside, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) string {
		p := filepath.Join(outside, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name, path, want string
	}{
		{"directory", outside, "a directory"},
		{"FIFO", fifo, "a FIFO"},
		{"device", os.DevNull, "a device"},
		{"link to a directory", link("dir-link", outside), "a directory"},
		{"link to a FIFO", link("fifo-link", fifo), "a FIFO"},
		{"link to a device", link("dev-link", os.DevNull), "a device"},
		{"dangling link", link("dangling", filepath.Join(outside, "nothing")), "symbolic link to nothing"},
	} {
		for _, force := range []bool{false, true} {
			_, err := restore.ToSQLite(context.Background(), src, tt.path, force, restore.Options{TempDir: tmp})
			var te *restore.TargetError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s (force %v): got %v, want a TargetError saying %q", tt.name, force, err, tt.want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "nothing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dangling link's target was created: %v", err)
	}

	// A link to a regular file: the file is replaced, the link stays.
	real := filepath.Join(outside, "real.sqlite")
	if err := os.WriteFile(real, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l := link("real-link", real)
	if _, err := restore.ToSQLite(context.Background(), src, l, false, restore.Options{TempDir: tmp}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(l); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v", err)
	}
	db := openRO(t, real)
	if got := query(t, db, `SELECT a FROM t`); len(got) != 1 || got[0] != "restored" {
		t.Errorf("the linked file holds %q, want the restored row", got)
	}
}

func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
