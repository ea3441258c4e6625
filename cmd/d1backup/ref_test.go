package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1emu"
)

type listDoc struct {
	Backups []struct {
		ID           string `json:"id"`
		DatabaseName string `json:"database_name"`
		Key          string `json:"key"`
		Verification *struct {
			OK bool `json:"ok"`
		} `json:"verification"`
	} `json:"backups"`
	Unfinished []struct {
		Key string `json:"key"`
	} `json:"unfinished"`
	Skipped []struct {
		Key    string `json:"key"`
		Reason string `json:"reason"`
	} `json:"skipped"`
}

func (w *world) list(t *testing.T, args ...string) listDoc {
	t.Helper()
	r := w.run(t, w.env(), append([]string{"list", "--json"}, args...)...)
	var l listDoc
	if err := json.Unmarshal([]byte(r.stdout), &l); r.code != 0 || err != nil {
		t.Fatalf("list --json: exit %d (%v)\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return l
}

// reportKey is the key a verify --json report names.
func reportKey(t *testing.T, out string) string {
	t.Helper()
	return decode[struct {
		Key string `json:"key"`
	}](t, out).Key
}

// TestBackupRefs: verify and restore take a backup by ID (or a unique
// prefix), <database>@latest, <database>@<ID>, its key or a file, as an
// argument (restore's --from too).
func TestBackupRefs(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	first := w.backupJSON(t, w.env(), "gzip")
	if err := w.emu.Exec(w.db.UUID, "INSERT INTO notes (body) VALUES ('third')"); err != nil {
		t.Fatal(err)
	}
	second := w.backupJSON(t, w.env(), "zstd")
	l := w.list(t)
	if len(l.Backups) != 2 || l.Backups[0].Key != first || l.Backups[1].Key != second {
		t.Fatalf("list: %+v, want %s then %s", l.Backups, first, second)
	}
	id1, id2 := l.Backups[0].ID, l.Backups[1].ID
	for _, line := range strings.Split(w.run(t, w.env(), "list").stdout, "\n") {
		if len(line) > 100 {
			t.Errorf("list line over 100 columns: %q", line)
		}
	}
	golden(t, "json/list.shape", shape(t, w.run(t, w.env(), "list", "--json").stdout))
	if l := w.list(t, "--last", "1"); len(l.Backups) != 1 || l.Backups[0].Key != second {
		t.Errorf("list --last 1: %+v, want only %s", l.Backups, second)
	}

	for _, tt := range []struct {
		ref, want string
	}{
		{id1, first}, {id2, second}, {id2[:5], second}, {"notes@latest", second}, {w.db.UUID + "@latest", second},
		{"notes@" + id1, first}, {first, first}, {first + ".manifest.json", first},
		{filepath.Join(w.dir, "d1-backups", filepath.FromSlash(first)), filepath.Base(first)},
	} {
		r := w.run(t, w.env(), "verify", "--json", "--no-record", tt.ref)
		if r.code != 0 || reportKey(t, r.stdout) != tt.want {
			t.Errorf("verify %s: exit %d, key %s, want %s\n%s", tt.ref, r.code, reportKey(t, r.stdout), tt.want, r.stderr)
		}
	}
	want := notes(t, w.path(t, w.db.UUID))
	for i, args := range [][]string{{"restore", id2}, {"restore", "--from", id2}, {"restore", "notes@latest"}} {
		out := filepath.Join(w.dir, fmt.Sprintf("restored-%d.sqlite", i))
		r := w.run(t, w.env(), append(args, "--to-sqlite", out)...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
		if got := notes(t, out); !slices.Equal(got, want) {
			t.Errorf("%v: rows %q, want %q", args, got, want)
		}
		if !regexp.MustCompile(`(?m)^  [0-9]+ statements, [0-9]+ rows written$`).MatchString(r.stdout) {
			t.Errorf("%v: output does not count statements and rows:\n%s", args, r.stdout)
		}
	}

	for _, tt := range []struct {
		ref      string
		wantCode int
		wantErr  string
	}{
		{"ffff0000", 1, "no backup with ID ffff0000 in d1-backups"},
		{"nope@latest", 1, `no backups of a database "nope"`},
		{"notes@ffff0000", 1, "no backup with ID ffff0000"},
		{"nope/x.sql.gz", 1, "no backup nope/x.sql.gz.manifest.json"},
	} {
		r := w.run(t, w.env(), "verify", tt.ref)
		if r.code != tt.wantCode || !strings.Contains(lastLine(r.stderr), tt.wantErr) {
			t.Errorf("verify %s: exit %d, stderr %q; want %d and %q", tt.ref, r.code, r.stderr, tt.wantCode, tt.wantErr)
		}
	}
}

// TestAmbiguousAndUnfinishedIDs: a prefix two backups share is refused
// with both named; an unfinished backup cannot be picked.
func TestAmbiguousAndUnfinishedIDs(t *testing.T) {
	w := bare(t)
	root := filepath.Join(w.dir, "d1-backups")
	const db = "11111111-2222-3333-4444-555555555555"
	// Find two bookmarks whose IDs share four digits.
	seen := map[string]int{}
	a, b := -1, -1
	for n := 1; a < 0; n++ {
		p := backup.ID(db, fmt.Sprintf("%08x-00000000-00000000-%032x", n, n))[:4]
		if m, ok := seen[p]; ok {
			a, b = m, n
		}
		seen[p] = n
	}
	now := time.Now()
	ka := writeBackup(t, root, db, a, now, true)
	kb := writeBackup(t, root, db, b, now, true)
	ku := writeBackup(t, root, db, b+1, now, false)
	prefix := backup.ID(db, strings.TrimSuffix(filepath.Base(ka), ".sql"))[:4]
	r := w.run(t, bareEnv(), "verify", prefix)
	if r.code != 2 || !strings.Contains(r.stderr, "is ambiguous") || !strings.Contains(r.stderr, ka) || !strings.Contains(r.stderr, kb) {
		t.Errorf("verify %s: exit %d, stderr %q, want 2 naming %s and %s", prefix, r.code, r.stderr, ka, kb)
	}
	uid := backup.ID(db, strings.TrimSuffix(filepath.Base(ku), ".sql"))
	r = w.run(t, bareEnv(), "verify", uid)
	if r.code != 1 || !strings.Contains(r.stderr, "has no manifest: it is an unfinished backup") {
		t.Errorf("verify %s (unfinished): exit %d, stderr %q", uid, r.code, r.stderr)
	}
	r = w.run(t, bareEnv(), "list")
	if !strings.Contains(r.stderr, "warning: "+ku+" has no manifest") {
		t.Errorf("list does not report the unfinished backup:\n%s", r.stderr)
	}
}

// TestVerifyRecords: verify records its result in the manifest (and only
// there), list and status show it; --no-record and a destination the user
// may not write still verify, report, and leave the manifest as it was.
func TestVerifyRecords(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	key := w.backupJSON(t, w.env(), "gzip")
	manifest := filepath.Join(w.dir, "d1-backups", filepath.FromSlash(key)) + ".manifest.json"
	dump := filepath.Join(w.dir, "d1-backups", filepath.FromSlash(key))
	before, _ := os.ReadFile(manifest)
	dumpBefore, _ := os.ReadFile(dump)

	r := w.run(t, w.env(), "verify", "--no-record", "notes@latest")
	if after, _ := os.ReadFile(manifest); r.code != 0 || string(after) != string(before) {
		t.Errorf("--no-record: exit %d, manifest changed: %v", r.code, string(after) != string(before))
	}

	// A destination the CLI may read but not write.
	readOnly(t, w)
	r = w.run(t, w.env(), "verify", "--json", "notes@latest")
	var doc struct {
		OK          bool   `json:"ok"`
		Recorded    bool   `json:"recorded"`
		RecordError string `json:"record_error"`
	}
	json.Unmarshal([]byte(r.stdout), &doc) //nolint:errcheck
	if after, _ := os.ReadFile(manifest); r.code != 0 || !doc.OK || doc.Recorded || doc.RecordError == "" || string(after) != string(before) {
		t.Errorf("read-only: exit %d, %+v, manifest changed %v\n%s", r.code, doc, string(after) != string(before), r.stderr)
	}
	if !strings.Contains(r.stderr, "warning: the result was not recorded in the manifest") {
		t.Errorf("read-only: no warning:\n%s", r.stderr)
	}
	w.attr = nil
	os.Chmod(filepath.Dir(manifest), 0o755) //nolint:errcheck
	os.Chmod(manifest, 0o644)               //nolint:errcheck

	r = w.run(t, w.env(), "verify", "notes@latest")
	if r.code != 0 || !strings.Contains(r.stdout, "verified: the backup restores\nrecorded in the manifest\n") {
		t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var m backup.Manifest
	after, _ := os.ReadFile(manifest)
	if err := json.Unmarshal(after, &m); err != nil || !m.Verified() || m.Verification.Tables["notes"] != 2 || m.Verification.SchemaHash == "" {
		t.Errorf("manifest after verify: %+v (%v)", m.Verification, err)
	}
	if dumpAfter, _ := os.ReadFile(dump); string(dumpAfter) != string(dumpBefore) {
		t.Error("verify changed the dump")
	}
	if l := w.list(t); l.Backups[0].Verification == nil || !l.Backups[0].Verification.OK {
		t.Errorf("list --json does not show the verification: %+v", l.Backups[0])
	}
	if r := w.run(t, w.env(), "list"); !regexp.MustCompile(`(?m)^[0-9a-f]{8}  notes .* gzip +yes$`).MatchString(r.stdout) {
		t.Errorf("list does not show VERIFIED yes:\n%s", r.stdout)
	}
}

// readOnly makes ./d1-backups read-only for the CLI: file modes, and for
// root (whom modes do not stop) running it as nobody.
func readOnly(t *testing.T, w *world) {
	t.Helper()
	root := filepath.Join(w.dir, "d1-backups")
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error { //nolint:errcheck
		if err == nil {
			mode := os.FileMode(0o444)
			if fi.IsDir() {
				mode = 0o555
			}
			os.Chmod(p, mode) //nolint:errcheck
		}
		return nil
	})
	if os.Geteuid() != 0 {
		return
	}
	for _, dir := range []string{filepath.Dir(binary), w.dir, filepath.Dir(w.dir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
}

// TestReadCommandsCreateNothing: list, status, verify, restore's lookup
// and prune --dry-run never create the destination folder.
func TestReadCommandsCreateNothing(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	for _, args := range [][]string{
		{"list"}, {"list", "--database", "notes"}, {"status"}, {"prune", "--dry-run"},
		{"prune", "--dry-run", "--keep-last", "1"}, {"verify", "3fa85f64"}, {"verify", "notes@latest"},
		{"restore", "3fa85f64", "--to-sqlite", "x.sqlite"}, {"list", "--dest", "elsewhere/deeper"},
	} {
		w.run(t, w.env(), args...)
		for _, dir := range []string{"d1-backups", "elsewhere"} {
			if _, err := os.Stat(filepath.Join(w.dir, dir)); err == nil {
				t.Fatalf("%v created %s", args, dir)
			}
		}
	}
}

// TestHostileNames: names with control and invisible formatting
// characters (from D1 or a manifest) are escaped in human output and kept
// exactly in JSON.
func TestHostileNames(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	const evil = "evil\x1b[2J\u202eeman\r"
	w.emu.MustCreate(t, evil, "CREATE TABLE t (x);")
	for _, args := range [][]string{{"backup", "--all"}, {"backup", "--database", evil}, {"list"}, {"list", "--long"}, {"status"},
		{"prune", "--dry-run"}, {"verify", evil + "@latest"}} {
		r := w.run(t, w.env(), args...)
		if strings.ContainsAny(r.stdout+r.stderr, "\x1b\u202e\r") {
			t.Errorf("%q: raw control characters in the output:\n%q\n%q", args, r.stdout, r.stderr)
		}
		if args[0] != "verify" && !strings.Contains(r.stdout+r.stderr, `"evil\x1b[2J\u202eeman\r"`) {
			t.Errorf("%q: the name is not shown escaped:\n%s\n%s", args, r.stdout, r.stderr)
		}
	}
	l := w.list(t, "--database", evil)
	if len(l.Backups) != 1 || l.Backups[0].DatabaseName != evil {
		t.Errorf("list --json does not keep the name exactly: %+v", l.Backups)
	}
}
