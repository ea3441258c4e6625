package step_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/testenv"
)

// TestRedriveDatabase fails a database backup for a cause, fixes the
// cause, and redrives the execution as Step Functions does: from the state
// entered and never exited, with the input it had. Each must end
// SUCCEEDED with the backup stored, and must have stopped at the Task that
// failed, its error the class the code returned.
func TestRedriveDatabase(t *testing.T) {
	s3 := testenv.RequireS3(t)
	for _, tt := range []struct {
		name      string
		opts      d1emu.Options
		faults    []d1emu.Fault
		refuse    int // the R2 proxy refuses writes with this status
		failsAt   string
		wantError string
		wantCause string
		// expire waits until the signed URL of the failed attempt expired
		// before the cause is fixed.
		expire time.Duration
	}{
		{name: "bad token", faults: []d1emu.Fault{{Endpoint: "any", Kind: d1emu.FaultBadToken, Times: 1000}},
			failsAt: "StartExport", wantError: "AuthError", wantCause: "rejected the API token"},
		{name: "Cloudflare down past the retries", faults: []d1emu.Fault{{Endpoint: "poll", Kind: d1emu.FaultServerError, Times: 1000}},
			failsAt: "PollExport", wantError: "UnavailableError", wantCause: "HTTP 500"},
		{name: "expired URLs used up the restarts", faults: []d1emu.Fault{{Endpoint: "download", Kind: d1emu.FaultExpired, Times: 1000}},
			failsAt: "StartExport", wantError: "TooManyRestartsError", wantCause: "gave up on database inventory"},
		{name: "store refused", refuse: 403, failsAt: "StoreDump", wantError: "StoreFailedError", wantCause: "AccessDenied"},
		{name: "store down past the retries", refuse: 503, failsAt: "StoreDump", wantError: "StoreUnavailableError", wantCause: "SlowDown"},
		{name: "store refused and the URL expired meanwhile", refuse: 403, opts: d1emu.Options{URLTTL: 3 * time.Second}, expire: 4 * time.Second,
			failsAt: "StoreDump", wantError: "StoreFailedError", wantCause: "AccessDenied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			opts.ExportPolls = 2
			emu := d1emutest.Start(t, opts)
			db := emu.MustCreate(t, "inventory", seed)
			dump := emu.MustDump(t, db.UUID)
			for _, f := range tt.faults {
				emu.InjectFault(f)
			}
			proxy := startR2Proxy(t, s3)
			proxy.refuse.Store(int32(tt.refuse))
			bucket := s3.NewBucket(t)
			s := startSim(t, workflowEnv(emu, s3, bucket, "R2_ENDPOINT="+proxy.URL))

			arn := s.start(t, "BackupDatabase", "", `{"database_name":"inventory"}`)
			d := s.wait(t, arn)
			if d.Status != types.ExecutionStatusFailed || aws.ToString(d.Error) != tt.wantError || !strings.Contains(aws.ToString(d.Cause), tt.wantCause) {
				t.Fatalf("first attempt: %s %s %q, want FAILED %s %q", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause), tt.wantError, tt.wantCause)
			}
			if got := s.failedAt(t, arn); got != tt.failsAt {
				t.Fatalf("stopped at %s, want the Task that failed, %s", got, tt.failsAt)
			}
			time.Sleep(tt.expire)
			emu.ClearFaults()
			proxy.refuse.Store(0)

			if _, err := s.client.RedriveExecution(context.Background(), &sfn.RedriveExecutionInput{ExecutionArn: aws.String(arn)}); err != nil {
				t.Fatal(err)
			}
			d = s.wait(t, arn)
			if d.Status != types.ExecutionStatusSucceeded {
				t.Fatalf("redriven: %s %s %q, want SUCCEEDED", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
			}
			checkBackup(t, s3, bucket, []byte(aws.ToString(d.Output)), dump)
		})
	}
}

// TestRedriveRun fails one of a run's three databases. The run stops at
// its check step naming the database; `d1backup redrive <run ARN>`
// redrives the database's execution from its failed step, then its page
// and the run, which succeeds without backing up the other two again.
func TestRedriveRun(t *testing.T) {
	s3 := testenv.RequireS3(t)
	emu := d1emutest.Start(t, d1emu.Options{ExportPolls: 1})
	dumps := map[string][]byte{}
	var broken d1emu.Database
	for _, name := range []string{"alpha", "beta", "gamma"} {
		db := emu.MustCreate(t, name, seed)
		dumps[name] = emu.MustDump(t, db.UUID)
		if name == "beta" {
			broken = db
		}
	}
	emu.InjectFault(d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultBadToken, Times: 1000, Database: broken.UUID})
	bucket := s3.NewBucket(t)
	s := startSim(t, workflowEnv(emu, s3, bucket))

	run := s.start(t, "BackupRun", "nightly-1", `{}`)
	d := s.wait(t, run)
	if d.Status != types.ExecutionStatusFailed || aws.ToString(d.Error) != "BackupsFailedError" ||
		!strings.Contains(aws.ToString(d.Cause), "backup failed for 1 of 3 databases in run nightly-1: beta") {
		t.Fatalf("run: %s %s %q, want FAILED BackupsFailedError naming beta", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
	}
	if got := s.failedAt(t, run); got != "CheckChildren" {
		t.Fatalf("run stopped at %s, want CheckChildren", got)
	}
	betaArn := strings.Replace(s.Machines["BackupDatabase"], ":stateMachine:", ":execution:", 1) + ":" + broken.UUID + "-nightly-1"
	if d := s.wait(t, betaArn); aws.ToString(d.Error) != "AuthError" || s.failedAt(t, betaArn) != "StartExport" {
		t.Fatalf("beta's execution: %s %s at %s, want AuthError at StartExport", d.Status, aws.ToString(d.Error), s.failedAt(t, betaArn))
	}

	emu.ClearFaults()
	cmd := exec.Command(binary, "redrive", run)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_SFN="+s.Endpoint, "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=simulation", "AWS_SECRET_ACCESS_KEY=simulation", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("d1backup redrive: %v\nstdout: %s\nstderr: %s", err, out.String(), errOut.String())
	}
	for _, want := range []string{broken.UUID + "-nightly-1", "nightly-1-p0", run} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("redrive output does not name %s:\n%s", want, out.String())
		}
	}
	d = s.wait(t, run)
	if d.Status != types.ExecutionStatusSucceeded {
		t.Fatalf("redriven run: %s %s %q", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
	}
	var summary struct{ Total, Succeeded int }
	if err := json.Unmarshal([]byte(aws.ToString(d.Output)), &summary); err != nil || summary.Total != 3 || summary.Succeeded != 3 {
		t.Errorf("run output %s (%v), want 3 of 3 backed up", aws.ToString(d.Output), err)
	}
	// Only beta's execution ran again.
	list, err := s.client.ListExecutions(context.Background(), &sfn.ListExecutionsInput{StateMachineArn: aws.String(s.Machines["BackupDatabase"])})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Executions {
		wantRedrives := int32(0)
		if strings.HasPrefix(aws.ToString(e.Name), broken.UUID) {
			wantRedrives = 1
		}
		if e.Status != types.ExecutionStatusSucceeded || aws.ToInt32(e.RedriveCount) != wantRedrives {
			t.Errorf("%s: %s after %d redrives, want SUCCEEDED after %d", aws.ToString(e.Name), e.Status, aws.ToInt32(e.RedriveCount), wantRedrives)
		}
	}
	if len(list.Executions) != 3 {
		t.Errorf("%d database executions, want 3 (one per database, none duplicated)", len(list.Executions))
	}
	for name, dump := range dumps {
		checkStoredDump(t, s3, bucket, name, dump)
	}
}

// TestRunSkipsRunningBackups starts a run while two of its databases are
// still being backed up by other executions (one an earlier run's, one
// started by hand): the run leaves them out and says so, backs up the
// third, and each database is exported once.
func TestRunSkipsRunningBackups(t *testing.T) {
	s3 := testenv.RequireS3(t)
	emu := d1emutest.Start(t, d1emu.Options{ExportPolls: 1})
	dbs := map[string]d1emu.Database{}
	for _, name := range []string{"alpha", "beta", "gamma"} {
		dbs[name] = emu.MustCreate(t, name, seed)
	}
	bucket := s3.NewBucket(t)
	// The other executions wait out a rate limit for 5 s while the run starts.
	s := startSim(t, workflowEnv(emu, s3, bucket), "--wait", "WaitToStart=5000")
	for _, name := range []string{"alpha", "beta"} {
		emu.InjectFault(d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultRateLimit, RetryAfter: 60, Database: dbs[name].UUID})
	}
	earlier := s.start(t, "BackupDatabase", dbs["alpha"].UUID+"-earlier-run", `{"database_id":"`+dbs["alpha"].UUID+`"}`)
	byHand := s.start(t, "BackupDatabase", "by-hand", `{"database_name":"beta"}`)

	run := s.start(t, "BackupRun", "nightly-2", `{}`)
	d := s.wait(t, run)
	if d.Status != types.ExecutionStatusSucceeded {
		t.Fatalf("run: %s %s %q", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
	}
	var sum struct {
		Total        int `json:"total"`
		Succeeded    int `json:"succeeded"`
		SkippedCount int `json:"skipped_count"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(d.Output)), &sum); err != nil || sum.Total != 3 || sum.Succeeded != 1 || sum.SkippedCount != 2 {
		t.Errorf("run output %s, want 3 databases: 1 backed up, 2 skipped", aws.ToString(d.Output))
	}
	page := s.wait(t, strings.Replace(s.Machines["BackupPage"], ":stateMachine:", ":execution:", 1)+":nightly-2-p0")
	var pageOut struct {
		Skipped []struct {
			DatabaseName string `json:"database_name"`
			Running      string `json:"running"`
		} `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(page.Output)), &pageOut); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, sk := range pageOut.Skipped {
		got[sk.DatabaseName] = sk.Running
	}
	if got["alpha"] != dbs["alpha"].UUID+"-earlier-run" || got["beta"] != "by-hand" || len(got) != 2 {
		t.Errorf("page skipped %v, want alpha (the earlier run's) and beta (by hand), each with its execution", got)
	}
	for _, arn := range []string{earlier, byHand} {
		if d := s.wait(t, arn); d.Status != types.ExecutionStatusSucceeded {
			t.Errorf("%s: %s %s", arn, d.Status, aws.ToString(d.Cause))
		}
	}
	for name, db := range dbs {
		checkStoredDump(t, s3, bucket, name, emu.MustDump(t, db.UUID))
	}
}
