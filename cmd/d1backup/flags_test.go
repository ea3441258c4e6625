package main_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// TestRepeatableRecipients: --age-recipient is repeatable; each identity
// alone can verify the backup.
func TestRepeatableRecipients(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	var args []string
	for i := range 2 {
		id, _ := age.GenerateX25519Identity()
		file := filepath.Join(w.dir, []string{"a.key", "b.key"}[i])
		if err := os.WriteFile(file, []byte(id.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--age-recipient", id.Recipient().String())
	}
	r := w.run(t, w.env(), append([]string{"backup", "--database", "notes"}, args...)...)
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	// A wrong identity reaches no verdict on the backup: nothing recorded.
	stranger, _ := age.GenerateX25519Identity()
	os.WriteFile(filepath.Join(w.dir, "c.key"), []byte(stranger.String()+"\n"), 0o600) //nolint:errcheck
	manifests, _ := filepath.Glob(filepath.Join(w.dir, "d1-backups", w.db.UUID, "*.manifest.json"))
	before, _ := os.ReadFile(manifests[0])
	if r := w.run(t, w.env(), "verify", "notes@latest", "--identity", "c.key"); r.code != 1 || !strings.Contains(r.stderr, "cannot decrypt") {
		t.Errorf("verify with a wrong identity: exit %d\n%s", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(manifests[0]); string(after) != string(before) {
		t.Error("a wrong identity was recorded as a failed verification")
	}
	for _, key := range []string{"a.key", "b.key"} {
		if r := w.run(t, w.env(), "verify", "notes@latest", "--identity", key); r.code != 0 {
			t.Errorf("verify with %s: exit %d\n%s", key, r.code, r.stderr)
		}
	}
}

// TestInterrupt: SIGINT during an export ends the backup with exit 130,
// one line, and no backup under a final key.
func TestInterrupt(t *testing.T) {
	w := newWorld(t, d1emu.Options{ExportPolls: 100})
	cmd := exec.Command(binary, "backup", "--database", "notes", "--poll-interval", "1s")
	cmd.Dir, cmd.Env = w.dir, w.env()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "exporting") {
		t.Fatalf("first line %q, want the export under way", sc.Text())
	}
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	for sc.Scan() {
		rest.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130", err)
	}
	if got := strings.TrimSpace(rest.String()); got != "d1backup backup: interrupted" {
		t.Errorf("after the signal: %q", got)
	}
	if files, _ := filepath.Glob(filepath.Join(w.dir, "d1-backups", w.db.UUID, "*")); len(files) > 0 {
		t.Errorf("an interrupted backup left %v", files)
	}
}

// TestJSONShapes pins the --json shapes of the commands not pinned
// elsewhere (backup of several, list and status have their own).
func TestJSONShapes(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"backup-one", []string{"backup", "--database", "notes", "--json"}, 0},
		{"verify", []string{"verify", "notes@latest", "--json"}, 0},
		{"restore-sqlite", []string{"restore", "notes@latest", "--to-sqlite", "x.sqlite", "--json"}, 0},
		{"restore-d1", []string{"restore", "notes@latest", "--create", "copy", "--json"}, 0},
		{"prune", []string{"prune", "--keep-last", "1", "--dry-run", "--json"}, 0},
		{"version", []string{"version", "--json"}, 0},
	} {
		r := w.run(t, w.env(), tt.args...)
		if r.code != tt.code {
			t.Fatalf("%v: exit %d\n%s", tt.args, r.code, r.stderr)
		}
		golden(t, "json/"+tt.name+".shape", shape(t, r.stdout))
	}
}
