package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// sfnServer answers the Step Functions JSON protocol (awsJson1_0) for the
// few operations the CLI uses, from a fixed script, and records what it was
// asked. No Step Functions server runs on these machines; this checks that
// the requests the CLI builds and the answers it parses follow the protocol.
type sfnServer struct {
	mu    sync.Mutex
	calls []sfnCall
	reply map[string]string // operation -> JSON body
}

type sfnCall struct {
	Op   string
	Body map[string]any
}

func (s *sfnServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AWSStepFunctions.")
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	s.mu.Lock()
	s.calls = append(s.calls, sfnCall{Op: op, Body: body})
	reply, ok := s.reply[op]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"__type":"com.amazonaws.sfn#InvalidArn","message":"unexpected operation `+op+`"}`)
		return
	}
	io.WriteString(w, reply)
}

const (
	runARN  = "arn:aws:states:us-east-1:123456789012:stateMachine:BackupRun"
	execARN = "arn:aws:states:us-east-1:123456789012:execution:BackupRun:manual-1"
)

func TestStepFunctionsCommands(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	for _, tt := range []struct {
		name     string
		args     []string
		reply    map[string]string
		wantCode int
		wantOut  string
		wantErr  string
		wantOps  string
	}{
		{
			name:    "run",
			args:    []string{"run", "--state-machine", runARN},
			reply:   map[string]string{"StartExecution": `{"executionArn":"` + execARN + `","startDate":1764000000}`},
			wantOut: "started " + execARN,
			wantOps: "StartExecution",
		},
		{
			name: "run --wait reports the failure",
			args: []string{"run", "--state-machine", runARN, "--wait"},
			reply: map[string]string{
				"StartExecution":    `{"executionArn":"` + execARN + `","startDate":1764000000}`,
				"DescribeExecution": `{"executionArn":"` + execARN + `","stateMachineArn":"` + runARN + `","status":"FAILED","startDate":1764000000,"error":"BackupsFailed","cause":"backups failed for: shop"}`,
			},
			wantCode: 1,
			wantErr:  "backups failed for: shop",
			wantOps:  "StartExecution,DescribeExecution",
		},
		{
			name: "executions shows causes",
			args: []string{"executions", "--state-machine", runARN},
			reply: map[string]string{
				"ListExecutions": `{"executions":[` +
					`{"executionArn":"` + execARN + `","stateMachineArn":"` + runARN + `","name":"manual-1","status":"FAILED","startDate":1764000000,"stopDate":1764000100},` +
					`{"executionArn":"` + execARN + `2","stateMachineArn":"` + runARN + `","name":"manual-2","status":"SUCCEEDED","startDate":1764000000,"stopDate":1764000100}]}`,
				"DescribeExecution": `{"executionArn":"` + execARN + `","stateMachineArn":"` + runARN + `","status":"FAILED","startDate":1764000000,"error":"BackupsFailed","cause":"backups failed for: shop"}`,
			},
			wantOut: "BackupsFailed: backups failed for: shop",
			wantOps: "ListExecutions,DescribeExecution",
		},
		{
			name: "redrive",
			args: []string{"redrive", execARN},
			reply: map[string]string{
				"DescribeExecution":   `{"executionArn":"` + execARN + `","stateMachineArn":"` + runARN + `","status":"FAILED","startDate":1764000000,"error":"AuthError","cause":"token rejected"}`,
				"GetExecutionHistory": `{"events":[{"id":3,"type":"TaskScheduled","timestamp":1764000001,"taskScheduledEventDetails":{"resourceType":"lambda","resource":"invoke","region":"us-east-1","parameters":"{\"FunctionName\":\"arn:aws:lambda:us-east-1:123456789012:function:discover\",\"Payload\":{}}"}}]}`,
				"RedriveExecution":    `{"redriveDate":1764000200}`,
			},
			wantOut: execARN + " redriven: it resumes from the state where it failed",
			wantOps: "DescribeExecution,GetExecutionHistory,RedriveExecution",
		},
		{
			name: "redrive of a running execution",
			args: []string{"redrive", execARN},
			reply: map[string]string{
				"DescribeExecution": `{"executionArn":"` + execARN + `","stateMachineArn":"` + runARN + `","status":"RUNNING","startDate":1764000000}`,
			},
			wantCode: 1,
			wantErr:  "is RUNNING: only a failed, timed out or aborted execution can be redriven",
			wantOps:  "DescribeExecution",
		},
		{name: "run without a state machine", args: []string{"run"}, wantCode: 2, wantErr: "D1BACKUP_STATE_MACHINE_ARN"},
		{name: "redrive without an ARN", args: []string{"redrive"}, wantCode: 2, wantErr: "missing argument"},
		{name: "redrive of a non-ARN", args: []string{"redrive", "shop"}, wantCode: 2, wantErr: "not an execution ARN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := &sfnServer{reply: tt.reply}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			env := w.env("AWS_ENDPOINT_URL_SFN="+hs.URL, "AWS_REGION=us-east-1",
				"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=not-a-real-secret",
				"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
			r := w.run(t, env, tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.wantOut) || !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stdout %q, stderr %q; want %q and %q", r.stdout, r.stderr, tt.wantOut, tt.wantErr)
			}
			var ops []string
			for _, c := range srv.calls {
				ops = append(ops, c.Op)
				if arn, ok := c.Body["stateMachineArn"]; ok && arn != runARN {
					t.Errorf("%s for %v, want %s", c.Op, arn, runARN)
				}
			}
			if got := strings.Join(ops, ","); got != tt.wantOps {
				t.Errorf("operations %q, want %q", got, tt.wantOps)
			}
			if strings.Contains(r.stdout+r.stderr, "not-a-real-secret") {
				t.Error("output leaks the AWS secret key")
			}
		})
	}
}
