package main_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/zstd"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "d1backup-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "d1backup")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic("build d1backup: " + err.Error() + "\n" + string(out))
	}
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

const seed = `
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO notes (body) VALUES ('first'), ('it''s
second');
`

type world struct {
	emu  *d1emutest.Emulator
	url  string
	db   d1emu.Database
	dump []byte
	dir  string // working directory of the CLI
	// attr, when set, starts the CLI with these attributes (another user).
	attr *syscall.SysProcAttr
}

func newWorld(t *testing.T, opts d1emu.Options) *world {
	t.Helper()
	emu := d1emutest.Start(t, opts)
	db := emu.MustCreate(t, "notes", seed)
	return &world{emu: emu, url: emu.BaseURL, db: db, dump: emu.MustDump(t, db.UUID), dir: t.TempDir()}
}

func (w *world) env(extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + w.dir,
		"CLOUDFLARE_ACCOUNT_ID=" + w.emu.AccountID(),
		"CLOUDFLARE_API_TOKEN=" + w.emu.Token(),
		"CLOUDFLARE_API_BASE_URL=" + w.url,
		"D1BACKUP_POLL_INTERVAL=1",
	}
	return append(env, extra...)
}

type result struct {
	code           int
	stdout, stderr string
}

func (w *world) run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = w.dir
	cmd.Env = env
	cmd.SysProcAttr = w.attr
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func gunzip(t *testing.T, b []byte) []byte { return decompress(t, "gzip", b) }

func decompress(t *testing.T, compression string, b []byte) []byte {
	t.Helper()
	var r io.Reader = bytes.NewReader(b)
	switch compression {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// secretsIn reports which secret shows up in any output.
func secretsIn(r result, secrets ...string) []string {
	var found []string
	for _, s := range secrets {
		if s != "" && (strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s)) {
			found = append(found, s)
		}
	}
	return found
}

var urlSecrets = []string{"X-Amz-Signature", "/__emu/dumps/"}

func TestBackupToLocalDefault(t *testing.T) {
	w := newWorld(t, d1emu.Options{ExportPolls: 1})
	r := w.run(t, w.env(), "backup", "--database", "notes")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "answers no queries") {
		t.Errorf("no warning that the database is blocked during export; stderr:\n%s", r.stderr)
	}
	if !strings.Contains(r.stdout, "sha256 "+sha(w.dump)) {
		t.Errorf("stdout does not report the dump's SHA-256 %s:\n%s", sha(w.dump), r.stdout)
	}
	files, err := filepath.Glob(filepath.Join(w.dir, "d1-backups", w.db.UUID, "*.sql.gz"))
	if err != nil || len(files) != 1 {
		t.Fatalf("backups in ./d1-backups: %v %v, want one .sql.gz", files, err)
	}
	stored, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sha(gunzip(t, stored)), sha(w.dump); got != want {
		t.Fatalf("stored SQL sha256 %s, want %s", got, want)
	}
	if _, err := os.Stat(files[0] + ".manifest.json"); err != nil {
		t.Errorf("no manifest beside the dump: %v", err)
	}
	if s := secretsIn(r, append(urlSecrets, w.emu.Token())...); len(s) > 0 {
		t.Errorf("output leaks %v", s)
	}

	// A second run of the unchanged database stores nothing new.
	r = w.run(t, w.env(), "backup", "--database", w.db.UUID)
	if r.code != 0 || !strings.Contains(r.stdout, "already stored") {
		t.Errorf("rerun: exit %d, stdout %q, want 'already stored'", r.code, r.stdout)
	}

	r = w.run(t, w.env(), "list")
	if r.code != 0 || !strings.Contains(r.stdout, "  notes  ") || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("list: exit %d\n%s\nwant a header and one backup", r.code, r.stdout)
	}
}

func TestBackupToR2(t *testing.T) {
	s := testenv.RequireS3(t)
	w := newWorld(t, d1emu.Options{ExportPolls: 1})
	bucket := s.NewBucket(t)
	env := w.env(append(s.Env(bucket), "D1BACKUP_PREFIX=prod")...)
	client := s.Client()
	for i, compression := range []string{"gzip", "zstd", "none"} {
		// New data each time, so each run is a new export and a new backup.
		if err := w.emu.Exec(w.db.UUID, fmt.Sprintf("INSERT INTO notes (body) VALUES ('run %d')", i)); err != nil {
			t.Fatal(err)
		}
		dump := bytes.NewBuffer(w.emu.MustDump(t, w.db.UUID))
		r := w.run(t, env, "backup", "--database", "notes", "--compression", compression, "--json")
		if r.code != 0 {
			t.Fatalf("%s: exit %d\nstderr: %s", compression, r.code, r.stderr)
		}
		var sum struct {
			Key       string `json:"key"`
			SQLSHA256 string `json:"sql_sha256"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
			t.Fatalf("%s: stdout is not the JSON summary: %v\n%s", compression, err, r.stdout)
		}
		obj, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("prod/" + sum.Key)})
		if err != nil {
			t.Fatalf("%s: stored object: %v", compression, err)
		}
		stored, err := io.ReadAll(obj.Body)
		obj.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sha(decompress(t, compression, stored)), sha(dump.Bytes()); got != want || sum.SQLSHA256 != want {
			t.Fatalf("%s: stored SQL sha256 %s (reported %s), want the emulator dump's %s", compression, got, sum.SQLSHA256, want)
		}
		if s := secretsIn(r, append(urlSecrets, w.emu.Token(), s.SecretAccessKey)...); len(s) > 0 {
			t.Errorf("%s: output leaks %v", compression, s)
		}
	}
	r := w.run(t, env, "list", "--database", "notes", "--long")
	if r.code != 0 || strings.Count(r.stdout, w.db.UUID) != 6 {
		t.Errorf("list: exit %d\n%s\nwant three backups", r.code, r.stdout)
	}
}

// TestFailures: each failure gives one clear line on stderr and a non-zero
// exit, and leaves no backup behind.
func TestFailures(t *testing.T) {
	for _, tt := range []struct {
		name     string
		args     []string
		env      []string
		fault    *d1emu.Fault
		wantCode int
		wantErr  string
	}{
		{"no database flag", []string{"backup"}, nil, nil, 2, "give --database <uuid|name> (repeatable) or --all"},
		{"bad compression", []string{"backup", "--database", "notes", "--compression", "lz4"}, nil, nil, 2, "must be one of gzip, zstd, none"},
		{"unknown command", []string{"bakup"}, nil, nil, 2, `unknown command "bakup"`},
		{"unknown database", []string{"backup", "--database", "nope"}, nil, nil, 1, `database "nope" not found`},
		{"bad token", []string{"backup", "--database", "notes"}, []string{"CLOUDFLARE_API_TOKEN=wrong"}, nil, 1, "rejected the API token"},
		{"no account", []string{"backup", "--database", "notes"}, []string{"CLOUDFLARE_ACCOUNT_ID="}, nil, 1, "CLOUDFLARE_ACCOUNT_ID is not set"},
		{"export error", []string{"backup", "--database", "notes", "--method", "export"}, nil, &d1emu.Fault{Endpoint: "any", Kind: d1emu.FaultExportError}, 1, "virtual tables"},
		{"truncated download", []string{"backup", "--database", "notes"}, nil, &d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultTruncate, Times: 100}, 1, "dump truncated"},
		{"bad destination", []string{"backup", "--database", "notes", "--dest", "ftp://x"}, nil, nil, 2, `unknown scheme "ftp"; use <folder> or r2://<bucket>/<prefix>`},
		{"bad flag value", []string{"backup", "--database", "notes", "--max-restarts", "9"}, nil, nil, 2, `invalid argument "9" for "--max-restarts" flag: must be a whole number from 0 to 5`},
		{"bad env value", []string{"backup", "--database", "notes"}, []string{"D1BACKUP_MAX_RESTARTS=9"}, nil, 1, `D1BACKUP_MAX_RESTARTS="9": must be a whole number from 0 to 5`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, d1emu.Options{})
			if tt.fault != nil {
				w.emu.InjectFault(*tt.fault)
			}
			r := w.run(t, w.env(tt.env...), tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstderr: %s", r.code, tt.wantCode, r.stderr)
			}
			last := lastLine(r.stderr)
			if !strings.Contains(last, tt.wantErr) {
				t.Errorf("last stderr line %q, want it to contain %q\nstderr:\n%s", last, tt.wantErr, r.stderr)
			}
			if s := secretsIn(r, append(urlSecrets, w.emu.Token())...); len(s) > 0 {
				t.Errorf("output leaks %v", s)
			}
			files, _ := filepath.Glob(filepath.Join(w.dir, "d1-backups", "*", "*"))
			// A checkpoint (what a rerun goes on from) is not a backup.
			files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".checkpoint") })
			if len(files) > 0 {
				t.Errorf("failed backup left files: %v", files)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestHelp(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	for _, args := range [][]string{{"--help"}, {"backup", "--help"}, {"list", "--help"}} {
		r := w.run(t, w.env(), args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage") && !strings.Contains(r.stdout, "usage") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
}

// TestCredentialsInADestinationAreNeverEchoed: a secret typed into a
// destination or backup URL is refused without being repeated.
func TestCredentialsInADestinationAreNeverEchoed(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	for _, args := range [][]string{
		{"backup", "--database", "notes", "--dest", "r2://AKID:sup3rs3cret@bucket/p"},
		{"list", "--dest", "r2://AKID:sup3rs3cret@bucket"},
		{"verify", "r2://AKID:sup3rs3cret@bucket/x/y.sql.gz"},
		{"restore", "r2://AKID:sup3rs3cret@bucket/x/y.sql.gz", "--to-sqlite", "out.sqlite"},
	} {
		r := w.run(t, w.env(), args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, "sup3rs3cret") {
			t.Errorf("%v echoes the secret:\n%s", args, r.stderr)
		}
	}
}
