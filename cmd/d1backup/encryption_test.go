package main_test

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	_ "modernc.org/sqlite"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// TestEncryptionRoundTrip: a backup encrypted to a public key is stored
// unreadable, verifies and restores only with the matching identity, and a
// wrong or missing identity gets a clear message.
func TestEncryptionRoundTrip(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	id, _ := age.GenerateX25519Identity()
	stranger, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(w.dir, "backup.key")
	wrongFile := filepath.Join(w.dir, "wrong.key")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrongFile, []byte(stranger.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := w.run(t, w.env("D1BACKUP_AGE_RECIPIENTS="+id.Recipient().String()), "backup", "--database", "notes", "--json")
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	var sum struct {
		Key       string `json:"key"`
		Encrypted bool   `json:"encrypted"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || !sum.Encrypted || !strings.HasSuffix(sum.Key, ".sql.gz.age") {
		t.Fatalf("summary %+v (%v), want an encrypted .sql.gz.age backup", sum, err)
	}
	stored, err := os.ReadFile(filepath.Join(w.dir, "d1-backups", filepath.FromSlash(sum.Key)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(stored), "age-encryption.org/v1") {
		t.Fatalf("stored object does not start with the age header: %q", stored[:min(len(stored), 30)])
	}
	manifest, _ := os.ReadFile(filepath.Join(w.dir, "d1-backups", filepath.FromSlash(sum.Key)+".manifest.json"))
	if !strings.Contains(string(manifest), id.Recipient().String()) {
		t.Errorf("manifest does not record the recipient:\n%s", manifest)
	}
	if strings.Contains(string(manifest), "AGE-SECRET-KEY") {
		t.Fatal("manifest holds an identity")
	}

	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"verify with the identity", []string{"verify", sum.Key, "--identity", idFile}, 0, ""},
		{"verify with a wrong identity", []string{"verify", sum.Key, "--identity", wrongFile}, 1, "cannot decrypt backup"},
		{"verify without identity", []string{"verify", sum.Key}, 1, "--identity"},
		{"restore without identity", []string{"restore", "--from", sum.Key, "--to-sqlite", filepath.Join(w.dir, "x.sqlite")}, 1, "--identity"},
	} {
		r := w.run(t, w.env(), tt.args...)
		if r.code != tt.wantCode || !strings.Contains(lastLine(r.stderr+"\n"), tt.wantErr) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tt.name, r.code, r.stderr, tt.wantCode, tt.wantErr)
		}
		if strings.Contains(r.stdout+r.stderr, "AGE-SECRET-KEY") {
			t.Errorf("%s: output leaks an identity", tt.name)
		}
	}

	out := filepath.Join(w.dir, "restored.sqlite")
	r = w.run(t, w.env(), "restore", "--from", sum.Key, "--identity", idFile, "--to-sqlite", out)
	if r.code != 0 {
		t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
	}
	db, err := sql.Open("sqlite", out)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM notes WHERE body = 'it''s\nsecond'").Scan(&n); err != nil || n != 1 {
		t.Errorf("restored notes: %d matching rows (%v), want 1", n, err)
	}
}
