package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "modernc.org/sqlite"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/testenv"
)

// notes renders the notes table of a SQLite file.
func notes(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT quote(id)||','||quote(body) FROM notes ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s) //nolint:errcheck
		out = append(out, s)
	}
	return out
}

func (w *world) path(t *testing.T, id string) string {
	t.Helper()
	p, err := w.emu.DBPath(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// backupJSON backs the database up and returns the summary's key.
func (w *world) backupJSON(t *testing.T, env []string, compression string) string {
	t.Helper()
	r := w.run(t, env, "backup", "--database", "notes", "--compression", compression, "--json")
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	var sum struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatal(err)
	}
	return sum.Key
}

func writeRequests(emu *d1emu.Server) []string {
	var out []string
	for _, r := range emu.Requests() {
		switch r.Endpoint {
		case d1emu.EndpointImport, d1emu.EndpointUpload, d1emu.EndpointCreate:
			out = append(out, r.Endpoint)
		}
	}
	return out
}

func TestRestoreRoundTrip(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	for i, compression := range []string{"gzip", "zstd", "none"} {
		if err := w.emu.Exec(w.db.UUID, fmt.Sprintf("INSERT INTO notes (body) VALUES ('run %d: it''s; done')", i)); err != nil {
			t.Fatal(err)
		}
		key := w.backupJSON(t, w.env(), compression)
		want := notes(t, w.path(t, w.db.UUID))

		r := w.run(t, w.env(), "verify", key)
		if r.code != 0 || !strings.Contains(r.stdout, "verified") || !strings.Contains(r.stdout, fmt.Sprintf("  notes  %d rows\n", len(want))) {
			t.Errorf("%s: verify: exit %d\n%s\n%s", compression, r.code, r.stdout, r.stderr)
		}
		name := "notes-" + compression
		r = w.run(t, w.env(), "restore", "--from", key, "--create", name)
		if r.code != 0 {
			t.Fatalf("%s: restore: exit %d\n%s\n%s", compression, r.code, r.stdout, r.stderr)
		}
		for _, s := range []string{"new database " + name, fmt.Sprintf("%d rows written", len(want)), "final bookmark 0000"} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("%s: restore output lacks %q:\n%s", compression, s, r.stdout)
			}
		}
		if got := notes(t, w.path(t, name)); !slices.Equal(got, want) {
			t.Errorf("%s: restored rows %q, want %q", compression, got, want)
		}
		// The same backup into a local SQLite file, given by its path.
		out := filepath.Join(w.dir, name+".sqlite")
		r = w.run(t, w.env(), "restore", "--from", filepath.Join(w.dir, "d1-backups", filepath.FromSlash(key)), "--to-sqlite", out)
		if r.code != 0 {
			t.Fatalf("%s: --to-sqlite: exit %d\n%s", compression, r.code, r.stderr)
		}
		if got := notes(t, out); !slices.Equal(got, want) {
			t.Errorf("%s: SQLite rows %q, want %q", compression, got, want)
		}
		if s := secretsIn(r, append(urlSecrets, w.emu.Token())...); len(s) > 0 {
			t.Errorf("output leaks %v", s)
		}
	}
}

func TestRestoreRefusals(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	key := w.backupJSON(t, w.env(), "gzip")
	if _, err := w.emu.CreateDatabase("empty", ""); err != nil {
		t.Fatal(err)
	}
	stored := filepath.Join(w.dir, "d1-backups", filepath.FromSlash(key))
	good, _ := os.ReadFile(stored)
	manifest := stored + ".manifest.json"
	goodManifest, _ := os.ReadFile(manifest)
	sqlite := filepath.Join(w.dir, "exists.sqlite")
	os.WriteFile(sqlite, []byte("not empty"), 0o644)

	for _, tt := range []struct {
		name     string
		args     []string
		tamper   func()
		wantCode int
		wantErr  string
	}{
		{"non-empty target", []string{"restore", "--from", key, "--database", "notes"}, nil, 1, "already has 1 table(s)"},
		{"name taken", []string{"restore", "--from", key, "--create", "notes"}, nil, 1, `a database named "notes" already exists`},
		{"existing file", []string{"restore", "--from", key, "--to-sqlite", sqlite}, nil, 1, "pass --force"},
		{"no such backup", []string{"restore", "--from", "nope/x.sql.gz", "--create", "n"}, nil, 1, "no backup nope/x.sql.gz.manifest.json"},
		{"corrupt object", []string{"restore", "--from", key, "--create", "n"}, func() {
			b := bytes.Clone(good)
			b[len(b)/2] ^= 1
			os.WriteFile(stored, b, 0o644)
		}, 1, "failed its integrity check"},
		{"corrupt object, existing empty target", []string{"restore", "--from", key, "--database", "empty"}, func() {
			os.WriteFile(stored, append(bytes.Clone(good), 0), 0o644)
		}, 1, "failed its integrity check"},
		{"tampered dump", []string{"verify", key}, func() {
			b := bytes.Clone(good)
			b[len(b)-10] ^= 1
			os.WriteFile(stored, b, 0o644)
		}, 1, "failed verification: stored_sha256"},
		{"tampered manifest", []string{"verify", "--json", key}, func() {
			var m map[string]any
			json.Unmarshal(goodManifest, &m) //nolint:errcheck
			m["stored_sha256"] = strings.Repeat("ab", 32)
			b, _ := json.Marshal(m)
			os.WriteFile(manifest, b, 0o644)
		}, 1, "failed verification: stored_sha256"},
		{"no target", []string{"restore", "--from", key}, nil, 2, "give exactly one target"},
		{"two targets", []string{"restore", "--from", key, "--create", "a", "--to-sqlite", "b"}, nil, 2, "give exactly one target"},
		{"no backup", []string{"restore", "--create", "a"}, nil, 2, "which backup?"},
		{"backup twice", []string{"restore", key, "--from", key, "--create", "a"}, nil, 2, "give the backup once"},
		{"verify nothing", []string{"verify"}, nil, 2, "give one backup"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(stored, good, 0o644)
			os.WriteFile(manifest, goodManifest, 0o644)
			if tt.tamper != nil {
				tt.tamper()
			}
			w.emu.ResetRequests()
			r := w.run(t, w.env(), tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if last := lastLine(r.stderr); !strings.Contains(last, tt.wantErr) {
				t.Errorf("last stderr line %q, want it to contain %q", last, tt.wantErr)
			}
			if got := writeRequests(w.emu.Server); len(got) > 0 {
				t.Errorf("refused command reached D1's write path: %v", got)
			}
			if strings.Contains(strings.Join(tt.args, " "), "--json") {
				var rep struct {
					OK     bool `json:"ok"`
					Checks []struct {
						Name string `json:"name"`
						OK   bool   `json:"ok"`
					} `json:"checks"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.OK || len(rep.Checks) == 0 {
					t.Errorf("--json report %q (%v), want ok=false with checks", r.stdout, err)
				}
			}
		})
	}
	if got, want := len(w.emu.Databases()), 2; got != want {
		t.Errorf("databases after refusals: %d, want %d", got, want)
	}
	if got := notes(t, w.path(t, "notes")); len(got) != 2 {
		t.Errorf("source database changed: %q", got)
	}
}

func TestRestoreFromR2(t *testing.T) {
	s := testenv.RequireS3(t)
	w := newWorld(t, d1emu.Options{})
	bucket := s.NewBucket(t)
	env := w.env(append(s.Env(bucket), "D1BACKUP_PREFIX=prod")...)
	key := w.backupJSON(t, env, "zstd")
	url := "r2://" + bucket + "/prod/" + key

	if r := w.run(t, env, "verify", url); r.code != 0 {
		t.Fatalf("verify %s: exit %d\n%s\n%s", url, r.code, r.stdout, r.stderr)
	}
	r := w.run(t, env, "restore", "--from", key+".manifest.json", "--create", "from-r2")
	if r.code != 0 {
		t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
	}
	if got, want := notes(t, w.path(t, "from-r2")), notes(t, w.path(t, "notes")); !slices.Equal(got, want) {
		t.Errorf("restored %q, want %q", got, want)
	}
	if s := secretsIn(r, append(urlSecrets, w.emu.Token(), s.SecretAccessKey)...); len(s) > 0 {
		t.Errorf("output leaks %v", s)
	}

	// Overwrite the object behind the backup's back: restore refuses.
	client := s.Client()
	ctx := context.Background()
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("prod/" + key)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	b[len(b)/2] ^= 0x40
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("prod/" + key), Body: bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	w.emu.ResetRequests()
	r = w.run(t, env, "restore", "--from", url, "--create", "corrupt")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "integrity check") {
		t.Errorf("corrupt object: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := writeRequests(w.emu.Server); len(got) > 0 {
		t.Errorf("corrupt restore reached D1's write path: %v", got)
	}
}

func TestRestoreVerifyHelp(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	for _, args := range [][]string{{"restore", "--help"}, {"verify", "--help"}} {
		r := w.run(t, w.env(), args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:\n  d1backup "+args[0]) {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := w.run(t, w.env(), "--help"); !strings.Contains(r.stdout, "\n  restore ") || !strings.Contains(r.stdout, "\n  verify ") {
		t.Errorf("usage lacks restore/verify:\n%s", r.stdout)
	}
}

// putDump stores sql uncompressed in the CLI's local backups as the
// backup called name, with a manifest that matches it, as someone with
// write access could; it returns the backup's key.
func (w *world) putDump(t *testing.T, name, sql string) string {
	t.Helper()
	key, err := backup.DumpKey(w.db.UUID, name, "none", false)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(w.dir, "d1-backups", filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	m := backup.Manifest{Format: backup.ManifestFormat, Tool: "d1backup", DatabaseID: w.db.UUID, DatabaseName: "notes", Bookmark: name, Key: key,
		SQLBytes: int64(len(sql)), SQLSHA256: sha([]byte(sql)), StoredBytes: int64(len(sql)), StoredSHA256: sha([]byte(sql)), Compression: "none"}
	mb, _ := json.Marshal(m)
	if err := os.WriteFile(p, []byte(sql), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+backup.ManifestSuffix, mb, 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestVerifyRefusesAProgram: a dump that attaches a file fails verify and
// --to-sqlite with one clear line and exit 1, and no file appears.
func TestVerifyRefusesAProgram(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	evil := filepath.Join(w.dir, "evil.db")
	key := w.putDump(t, "evil", fmt.Sprintf("CREATE TABLE t (a);\nATTACH DATABASE '%s' AS x;\nCREATE TABLE x.t (a);\n", evil))
	fifo := filepath.Join(w.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", key}, "load: statement 2 (at byte 20) was refused: it attaches or detaches a database"},
		{[]string{"restore", "--from", key, "--to-sqlite", "out.sqlite"}, "statement 2 (at byte 20) was refused"},
		{[]string{"restore", "--from", key, "--to-sqlite", fifo, "--force"}, "is not a regular file (a FIFO)"},
	} {
		r := w.run(t, w.env(), tt.args...)
		if r.code != 1 || !strings.Contains(lastLine(r.stderr), tt.want) {
			t.Errorf("%v: exit %d, last line %q; want exit 1 and %q\n%s", tt.args, r.code, lastLine(r.stderr), tt.want, r.stdout)
		}
	}
	for _, p := range []string{evil, filepath.Join(w.dir, "out.sqlite")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists: %v", p, err)
		}
	}
}

// TestRowsOver100KB: verify counts the rows over D1's statement limit and
// restore splits them; the row comes back identical.
func TestRowsOver100KB(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	if err := w.emu.Exec(w.db.UUID, `INSERT INTO notes (body) VALUES (printf('%.*c', 300000, 'z') || 'é' || char(10))`); err != nil {
		t.Fatal(err)
	}
	key := w.backupJSON(t, w.env(), "zstd")
	r := w.run(t, w.env(), "verify", key)
	if r.code != 0 || !strings.Contains(r.stdout, "\nrows over 100 KB: 1 ") {
		t.Errorf("verify: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = w.run(t, w.env(), "restore", "--from", key, "--create", "big")
	if r.code != 0 || !strings.Contains(r.stdout, "1 row over D1's 100 KB statement limit") {
		t.Fatalf("restore: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if got, want := notes(t, w.path(t, "big")), notes(t, w.path(t, w.db.UUID)); !slices.Equal(got, want) {
		t.Errorf("restored notes differ from the source's")
	}
}
