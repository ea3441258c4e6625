package executions_test

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/d1backup/d1backup/internal/executions"
)

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func TestNames(t *testing.T) {
	const id = "0b8b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"
	for _, tt := range []struct {
		run     string
		wantKey string
	}{
		{"0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e"}, // EventBridge
		{"manual-20260301T030000Z", "manual-20260301T030000Z"},                           // d1backup run
		{"nightly", "nightly"},
		{strings.Repeat("long-name-", 8), ""},
		{"my run: the one with spaces/and slashes", ""},
		{"ünïcode-ñame", ""},
	} {
		t.Run(tt.run, func(t *testing.T) {
			key := executions.RunKey(tt.run)
			if tt.wantKey != "" && key != tt.wantKey {
				t.Errorf("RunKey = %q, want %q", key, tt.wantKey)
			}
			if len(key) > 38 || !validName.MatchString(key) {
				t.Errorf("RunKey = %q: longer than 38 or not a valid name", key)
			}
			db := executions.DatabaseChild(id, key)
			for _, name := range []string{db, executions.PageChild(key, 9999), executions.Fresh(db, 999)} {
				if !validName.MatchString(name) {
					t.Errorf("child name %q is not a valid execution name", name)
				}
			}
			if gotID, gotKey, ok := executions.ParseDatabaseChild(db); !ok || gotID != id || gotKey != key {
				t.Errorf("ParseDatabaseChild(%q) = %q, %q, %v", db, gotID, gotKey, ok)
			}
		})
	}
	if a, b := executions.RunKey(strings.Repeat("x", 60)+"a"), executions.RunKey(strings.Repeat("x", 60)+"b"); a == b {
		t.Errorf("two long run names share the key %q", a)
	}
	for _, name := range []string{"by-hand", "0b8b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b", "0B8B1A2C-3D4E-4F50-8A6B-7C8D9E0F1A2B-run", "0b8b1a2c_3d4e-4f50-8a6b-7c8d9e0f1a2b-run"} {
		if _, _, ok := executions.ParseDatabaseChild(name); ok {
			t.Errorf("ParseDatabaseChild(%q) accepted a name the workflow does not make", name)
		}
	}
}

func TestARNs(t *testing.T) {
	const sm = "arn:aws:states:eu-west-1:123456789012:stateMachine:D1BackupBackupDatabase"
	arn, err := executions.ARN(sm, "abc-run")
	if err != nil || arn != "arn:aws:states:eu-west-1:123456789012:execution:D1BackupBackupDatabase:abc-run" {
		t.Errorf("ARN = %q, %v", arn, err)
	}
	if back, err := executions.StateMachineOf(arn); err != nil || back != sm {
		t.Errorf("StateMachineOf = %q, %v", back, err)
	}
	for _, bad := range []string{"", "arn:aws:lambda:eu-west-1:123456789012:function:x", "arn:aws:states:eu-west-1:123456789012:execution:x:y"} {
		if _, err := executions.ARN(bad, "n"); err == nil {
			t.Errorf("ARN(%q) accepted", bad)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		err       error
		retryable bool
	}{
		{&smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}, true},
		{&smithy.GenericAPIError{Code: "InternalFailure", Fault: smithy.FaultServer}, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{&smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}, false},
		{&types.ExecutionDoesNotExist{Message: new(string)}, false},
	} {
		t.Run(fmt.Sprintf("%T", tt.err), func(t *testing.T) {
			err := executions.Classify("describe", tt.err)
			var u *executions.StepFunctionsUnavailableError
			var f *executions.StepFunctionsError
			if errors.As(err, &u) != tt.retryable || errors.As(err, &f) == tt.retryable {
				t.Errorf("Classify(%v) = %T, want retryable %v", tt.err, err, tt.retryable)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("Classify lost the cause")
			}
		})
	}
}
