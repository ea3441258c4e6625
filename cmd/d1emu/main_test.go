package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// TestMain lets a test run this binary as d1emu itself (D1EMU_AS_MAIN=1),
// the way a shell starts it.
func TestMain(m *testing.M) {
	if os.Getenv("D1EMU_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// listNames lists the databases through the API: name → jurisdiction.
func listNames(t *testing.T, base, account, token string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/accounts/"+account+"/d1/database", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Success bool
		Result  []struct {
			Name         string
			Jurisdiction *string
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || !body.Success {
		t.Fatalf("list: HTTP %d, %v", res.StatusCode, err)
	}
	out := map[string]string{}
	for _, it := range body.Result {
		out[it.Name] = ""
		if it.Jurisdiction != nil {
			out[it.Name] = *it.Jurisdiction
		}
	}
	return out
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	dir := t.TempDir()
	seed := filepath.Join(dir, "notes.sql")
	os.WriteFile(seed, []byte("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');"), 0o644)
	envFile := filepath.Join(dir, "emu.env")
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--dir", dir, "--token", "tok", "--export-polls", "0",
			"--synthetic", "big=1MiB,jurisdiction=eu", "--seed", "notes=" + seed + ",jurisdiction=fedramp,location=weur",
			"--fts5-sample", "--env-file", envFile, "--rate-limit", "1000/1m"}, w, &stderr)
		w.Close()
	}()
	env := map[string]string{}
	var dbLines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && strings.HasPrefix(line, "export ") {
			env[k] = v
		}
		if strings.HasPrefix(line, "# database ") {
			dbLines = append(dbLines, line)
		}
		if line == "# ready" {
			break
		}
	}
	if rest, _ := io.ReadAll(out); len(rest) != 0 {
		t.Errorf("stdout after # ready: %q", rest)
	}
	base := env["CLOUDFLARE_API_BASE_URL"]
	if !strings.HasPrefix(base, "http://127.0.0.1:") || strings.HasSuffix(base, ":0/client/v4") || env["CLOUDFLARE_API_TOKEN"] != "tok" || len(env["CLOUDFLARE_ACCOUNT_ID"]) != 32 || env["D1EMU_PID"] != strconv.Itoa(os.Getpid()) {
		t.Fatalf("env lines = %v (stderr %s)", env, stderr.String())
	}
	// scripts/demo and scripts/bench read these lines' fields.
	if len(dbLines) != 4 || !strings.HasPrefix(dbLines[0], "# database sample ") || !strings.HasSuffix(dbLines[3], "(1048576 bytes)") ||
		!strings.Contains(dbLines[1], "# database sample-fts5 ") || !strings.Contains(dbLines[1], "dump unavailable: ") {
		t.Errorf("database lines = %q", dbLines)
	}
	if f := strings.Fields(dbLines[0]); len(f) != 9 || f[4] != "dump" || f[5] != "sha256" || len(f[6]) != 64 || !strings.HasPrefix(f[7], "(") {
		t.Errorf("database line fields %q", f)
	}
	file, _ := os.ReadFile(envFile)
	for _, k := range []string{"CLOUDFLARE_API_BASE_URL", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "D1EMU_PID"} {
		if !strings.Contains(string(file), k+"="+env[k]+"\n") {
			t.Errorf("env file lacks %s=%s:\n%s", k, env[k], file)
		}
	}
	got := listNames(t, base, env["CLOUDFLARE_ACCOUNT_ID"], "tok")
	want := map[string]string{"sample": "", "sample-fts5": "", "notes": "fedramp", "big": "eu"}
	for name, j := range want {
		if jur, ok := got[name]; !ok || jur != j {
			t.Errorf("list: %s jurisdiction %q (present %v), want %q", name, jur, ok, j)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.sqlite")); len(m) != 3 {
		t.Errorf("files in --dir: %v", m)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, stderr %s", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no shutdown after cancel")
	}
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"--help"}, 0, "Usage: d1emu", ""},
		{[]string{"--nope"}, 2, "", "flag provided but not defined"},
		{[]string{"--synthetic", "big"}, 2, "", "want name=value"},
		{[]string{"--rate-limit", "lots"}, 2, "", "want REQUESTS/WINDOW"},
		{[]string{"--rate-limit", "10/0s"}, 2, "", "want REQUESTS/WINDOW"},
		{[]string{"--no-sample", "--synthetic", "big=lots"}, 1, "", "bad size"},
		{[]string{"--no-sample", "--synthetic", "big=1KiB,jurisdiction=mars"}, 1, "", "jurisdiction must be one of eu, fedramp"},
		{[]string{"--no-sample", "--db", "x=/does/not/exist.sqlite"}, 1, "", "add x"},
		{[]string{"--no-sample", "--seed", "x=/does/not/exist.sql"}, 1, "", "seed x"},
		{[]string{"--export-polls", "-1"}, 1, "", "ExportPolls"},
		{[]string{"--addr", "256.0.0.1:1"}, 1, "", "d1emu: listen"},
		{[]string{"extra"}, 2, "", "unexpected arguments"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := run(context.Background(), tt.args, &stdout, &stderr)
		if code != tt.code || !strings.Contains(stdout.String(), tt.out) || !strings.Contains(stderr.String(), tt.err) {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, stdout.String(), stderr.String(), tt.code, tt.out, tt.err)
		}
	}
}

func TestSpecs(t *testing.T) {
	tests := []struct{ in, name, value string }{
		{"a=b.sqlite", "a", "b.sqlite"},
		{"a=/x,y/b.sqlite", "a", "/x,y/b.sqlite"},
		{"a=/x,y/b.sqlite,jurisdiction=eu", "a", "/x,y/b.sqlite"},
		{"a=b,location=weur,jurisdiction=eu", "a", "b"},
	}
	for _, tt := range tests {
		var s specs
		if err := s.Set(tt.in); err != nil || s[0].name != tt.name || s[0].value != tt.value {
			t.Errorf("Set(%q) = %+v, %v; want %s=%s", tt.in, s, err, tt.name, tt.value)
		}
	}
}

// TestHelpListsEverything: the help names every endpoint, control endpoint
// and fault kind, from the emulator's own tables.
func TestHelpListsEverything(t *testing.T) {
	var stdout strings.Builder
	if code := run(context.Background(), []string{"--help"}, &stdout, io.Discard); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	help := stdout.String()
	for _, ep := range []string{"list", "get", "create", "export", "poll", "download", "import", "upload", "query", "raw", "bookmark"} {
		if !strings.Contains(help, "\n  "+ep+" ") && !strings.Contains(help, `"`+ep+`"`) {
			t.Errorf("--help does not list endpoint %q", ep)
		}
	}
	var want []string
	for _, r := range d1emu.Routes() {
		want = append(want, r.Doc)
	}
	for _, r := range d1emu.ControlRoutes() {
		want = append(want, r.Method+" "+r.Path)
	}
	for _, k := range d1emu.FaultKinds() {
		want = append(want, "\n  "+k.Kind+" ", k.Effect, strings.Join(k.Endpoints, ", "))
	}
	want = append(want, `eval "$(d1emu --print-env`, "--env-file", "127.0.0.1:8791")
	for _, w := range want {
		if !strings.Contains(help, w) {
			t.Errorf("--help lacks %q", w)
		}
	}
	if len(d1emu.Routes()) != 10 || DefaultAddr != "127.0.0.1:8791" {
		t.Errorf("%d routes, default address %s", len(d1emu.Routes()), DefaultAddr)
	}
}

// TestEvalOneLiner runs the documented one-liner in bash: the shell gets
// the settings, and the emulator keeps serving after it until killed.
func TestEvalOneLiner(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to test the shell one-liner")
	}
	self, _ := os.Executable()
	dir := t.TempDir()
	script := `eval "$("$BIN" --print-env --addr 127.0.0.1:0 --dir "$DIR" --token "to k'en" 2>/dev/null &)"
printf '%s\n' "$CLOUDFLARE_API_BASE_URL" "$CLOUDFLARE_ACCOUNT_ID" "$CLOUDFLARE_API_TOKEN" "$D1EMU_PID"`
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = append(os.Environ(), "D1EMU_AS_MAIN=1", "BIN="+self, "DIR="+dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	outc := make(chan []byte, 1)
	go func() { b, _ := cmd.Output(); outc <- b }()
	var out []byte
	select {
	case out = <-outc:
	case <-ctx.Done():
		t.Fatal("the one-liner did not return: stdout stayed open")
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 || lines[2] != "to k'en" {
		t.Fatalf("the shell got %q", lines)
	}
	pid, err := strconv.Atoi(lines[3])
	if err != nil {
		t.Fatalf("D1EMU_PID %q", lines[3])
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	if got := listNames(t, lines[0], lines[1], lines[2]); len(got) != 1 {
		t.Errorf("after the shell returned: databases %v, want the sample", got)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := http.Get(lines[0])
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the emulator still serves after SIGTERM")
		}
	}
}
