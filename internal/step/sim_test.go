package step_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/testenv"
)

// sim is scripts/node/simulate.mjs serving the local Step Functions API
// with the workflow's three state machines, every Lambda task running the
// real Go handler.
type sim struct {
	Endpoint string            `json:"endpoint"`
	Machines map[string]string `json:"state_machines"`
	client   *sfn.Client
	stderr   *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// workflowEnv is the environment of the simulated functions: the CLI's,
// pointed at the emulator and a bucket.
func workflowEnv(emu *d1emutest.Emulator, s3 *testenv.S3, bucket string, extra ...string) []string {
	env := append(os.Environ(), s3.Env(bucket)...)
	env = append(env,
		"CLOUDFLARE_ACCOUNT_ID="+emu.AccountID(), "CLOUDFLARE_API_TOKEN="+emu.Token(),
		"CLOUDFLARE_API_BASE_URL="+emu.BaseURL, "D1BACKUP_SECRET_ARNS=", "D1BACKUP_KEEP_LAST=1")
	return append(env, extra...)
}

// simulateOnce runs one execution with scripts/node/simulate.mjs (the
// real handlers) and decodes its report into r; it returns what the run
// printed.
func simulateOnce(t *testing.T, env []string, r any, args ...string) (stdout, stderr string) {
	t.Helper()
	args = append([]string{"simulate.mjs", "--step-bin", binary, "--wait-ms", "10", "--retry-ms", "10"}, args...)
	cmd := exec.Command(node(t), args...)
	cmd.Dir = filepath.Join(repo, "scripts/node")
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	_ = cmd.Run()
	if err := json.Unmarshal(out.Bytes(), r); err != nil {
		t.Fatalf("simulation printed no report (%v)\nstdout: %s\nstderr: %s", err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// startSim runs the simulation server until the test ends.
func startSim(t *testing.T, env []string, args ...string) *sim {
	t.Helper()
	nodeBin := node(t)
	args = append([]string{"simulate.mjs", "serve", "--wait-ms", "10", "--retry-ms", "10"}, args...)
	if !slices.Contains(args, "--rie") {
		args = append(args, "--step-bin", binary)
	}
	cmd := exec.Command(nodeBin, args...)
	cmd.Dir = filepath.Join(repo, "scripts/node")
	cmd.Env = env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{stderr: &lockedBuffer{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("simulation stderr:\n%s", s.stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil || json.Unmarshal(line, s) != nil {
		t.Fatalf("simulation did not start (%v): %s\n%s", err, line, s.stderr.String())
	}
	s.client = sfn.New(sfn.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("simulation", "simulation", ""),
	})
	return s
}

func (s *sim) start(t *testing.T, machine, name, input string) string {
	t.Helper()
	in := &sfn.StartExecutionInput{StateMachineArn: aws.String(s.Machines[machine]), Input: aws.String(input)}
	if name != "" {
		in.Name = aws.String(name)
	}
	out, err := s.client.StartExecution(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ExecutionArn)
}

// wait blocks until the execution ends and describes it.
func (s *sim) wait(t *testing.T, arn string) *sfn.DescribeExecutionOutput {
	t.Helper()
	var d struct {
		Status, Error, Cause, Output string
		RedriveCount                 int32 `json:"redriveCount"`
	}
	s.control(t, "/__wait", arn, &d)
	return &sfn.DescribeExecutionOutput{ExecutionArn: aws.String(arn), Status: types.ExecutionStatus(d.Status),
		Error: aws.String(d.Error), Cause: aws.String(d.Cause), Output: aws.String(d.Output), RedriveCount: aws.Int32(d.RedriveCount)}
}

func (s *sim) control(t *testing.T, path, arn string, into any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"executionArn": arn})
	res, err := http.Post(s.Endpoint+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(into); err != nil || res.StatusCode != 200 {
		t.Fatalf("%s %s: HTTP %d, %v", path, arn, res.StatusCode, err)
	}
}

// failedAt is the state an execution last entered: where it stopped.
func (s *sim) failedAt(t *testing.T, arn string) string {
	t.Helper()
	out, err := s.client.GetExecutionHistory(context.Background(), &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn), ReverseOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range out.Events {
		if e.StateEnteredEventDetails != nil {
			return aws.ToString(e.StateEnteredEventDetails.Name)
		}
	}
	return ""
}

// r2Proxy stands between the functions and the S3 server, and refuses
// the bucket's writes (but for the preflight's probe under .d1backup/)
// with the status the test sets: an R2 that revoked a token, or is down.
type r2Proxy struct {
	URL    string
	refuse atomic.Int32
}

func startR2Proxy(t *testing.T, s3 *testenv.S3) *r2Proxy {
	t.Helper()
	target, err := url.Parse(s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = s3.HTTPClient.Transport
	p := &r2Proxy{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := int(p.refuse.Load()); code != 0 && (r.Method == http.MethodPut || r.Method == http.MethodPost) && !strings.Contains(r.URL.Path, "/.d1backup/") {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(code)
			errCode := map[int]string{403: "AccessDenied", 503: "SlowDown"}[code]
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + errCode + `</Code><Message>refused by the test</Message></Error>`))
			return
		}
		rp.ServeHTTP(w, r)
	})}
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.URL = "http://" + l.Addr().String()
	return p
}
