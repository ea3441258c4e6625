package step_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/internal/testenv"
)

// rieInstall is how scripts/test installs the Lambda runtime interface
// emulator.
const rieInstall = "go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// lambdaBootstraps builds every registered function as Lambda runs it
// (functions/<dir>, -tags lambda.norpc, static), for this machine's
// architecture, and returns the PATH that finds aws-lambda-rie.
func lambdaBootstraps(t *testing.T) (dir, path string) {
	t.Helper()
	gobin := filepath.Join(os.Getenv("HOME"), "go", "bin")
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		gobin = filepath.Join(strings.TrimSpace(string(out)), "bin")
	}
	path = gobin + string(os.PathListSeparator) + os.Getenv("PATH")
	if _, err := exec.LookPath("aws-lambda-rie"); err != nil {
		if _, err := os.Stat(filepath.Join(gobin, "aws-lambda-rie")); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("aws-lambda-rie missing: %s", rieInstall)
			}
			t.Skipf("aws-lambda-rie missing: %s", rieInstall)
		}
	}
	dir = t.TempDir()
	for _, d := range step.Registry {
		build := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", filepath.Join(dir, d.Dir(), "bootstrap"), "./functions/"+d.Dir())
		build.Dir = repo
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", d.Dir(), err, out)
		}
	}
	return dir, path
}

// TestWorkflowUnderLambdaRuntime runs the database workflow with every
// task invoking the real bootstrap binary under the Lambda runtime
// interface emulator (the Lambda invoke API, aws-lambda-go's error
// reporting): a backup that fails on a rejected token stops at
// StartExport with the AuthError class, and redriven once the token is
// accepted, it stores the backup.
func TestWorkflowUnderLambdaRuntime(t *testing.T) {
	s3 := testenv.RequireS3(t)
	dir, path := lambdaBootstraps(t)
	emu := d1emutest.Start(t, d1emu.Options{ExportPolls: 2})
	db := emu.MustCreate(t, "inventory", seed)
	emu.InjectFault(d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultBadToken, Times: 1000})
	bucket := s3.NewBucket(t)
	s := startSim(t, workflowEnv(emu, s3, bucket, "PATH="+path), "--rie", dir)

	arn := s.start(t, "BackupDatabase", "", `{"database_id":"`+db.UUID+`"}`)
	d := s.wait(t, arn)
	if d.Status != types.ExecutionStatusFailed || aws.ToString(d.Error) != "AuthError" || s.failedAt(t, arn) != "StartExport" {
		t.Fatalf("first attempt: %s %s %q at %s, want AuthError at StartExport", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause), s.failedAt(t, arn))
	}
	emu.ClearFaults()
	if _, err := s.client.RedriveExecution(context.Background(), &sfn.RedriveExecutionInput{ExecutionArn: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	d = s.wait(t, arn)
	if d.Status != types.ExecutionStatusSucceeded {
		t.Fatalf("redriven: %s %s %q", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
	}
	checkBackup(t, s3, bucket, []byte(aws.ToString(d.Output)), emu.MustDump(t, db.UUID))
}
