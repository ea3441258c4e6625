package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1emu"
)

// writeBackup lays down a dump and manifest exactly as a backup would.
func writeBackup(t *testing.T, root, dbID string, n int, at time.Time, withManifest bool) string {
	t.Helper()
	bookmark := fmt.Sprintf("%08x-00000000-00000000-%032x", n, n)
	key := dbID + "/" + bookmark + ".sql"
	path := filepath.Join(root, key)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	sql := []byte("PRAGMA defer_foreign_keys=TRUE;\n")
	if err := os.WriteFile(path, sql, 0o644); err != nil {
		t.Fatal(err)
	}
	if withManifest {
		m := backup.Manifest{Format: backup.ManifestFormat, Tool: "d1backup", DatabaseID: dbID, DatabaseName: "shop",
			Bookmark: bookmark, Key: key, ExportStartedAt: at, ExportCompletedAt: at, StoredAt: at, Compression: "none",
			SQLBytes: int64(len(sql)), SQLSHA256: sha(sql), StoredBytes: int64(len(sql)), StoredSHA256: sha(sql)}
		b, _ := json.Marshal(m)
		if err := os.WriteFile(path+backup.ManifestSuffix, b, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		old := at
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	return key
}

func TestPrune(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	root := filepath.Join(w.dir, "d1-backups")
	const db = "11111111-2222-3333-4444-555555555555"
	now := time.Now().UTC()
	var keys []string
	// Ten daily backups, newest first: days 0..9 ago.
	for i := 9; i >= 0; i-- {
		keys = append(keys, writeBackup(t, root, db, 100-i, now.AddDate(0, 0, -i), true))
	}
	failed := writeBackup(t, root, db, 1, now.AddDate(0, 0, -30), false)

	r := w.run(t, w.env(), "prune", "--keep-last", "2", "--keep-daily", "4", "--dry-run")
	if r.code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"4 backups kept, 7 would be deleted", "last 2 (#1)", "daily ", "matched no rule", "unfinished or failed backup", "would delete"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(root, failed)); err != nil {
		t.Fatalf("dry run deleted something: %v", err)
	}

	r = w.run(t, w.env("D1BACKUP_KEEP_LAST=2", "D1BACKUP_KEEP_DAILY=4"), "prune", "--database", "shop")
	if r.code != 0 || !strings.Contains(r.stdout, "4 backups kept, 7 deleted") {
		t.Fatalf("prune: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	exists := func(key string) bool { _, err := os.Stat(filepath.Join(root, key)); return err == nil }
	for i, key := range keys {
		want := i >= 6 // the four newest days (and with them the last two) survive
		if exists(key) != want || exists(key+backup.ManifestSuffix) != want {
			t.Errorf("backup %d (%s): dump %v manifest %v, want both %v", i, key, exists(key), exists(key+backup.ManifestSuffix), want)
		}
	}
	if exists(failed) {
		t.Error("the old unfinished dump survived")
	}

	for _, args := range [][]string{{"prune"}, {"prune", "--keep-last", "-3"}} {
		if r := w.run(t, w.env(), args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)\n%s", args, r.code, r.stderr)
		}
	}
}
