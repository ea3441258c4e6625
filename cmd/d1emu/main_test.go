package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	dir := t.TempDir()
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--dir", dir, "--token", "tok", "--synthetic", "big=1MiB", "--export-polls", "0"}, w, &stderr)
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
	go io.Copy(io.Discard, out)
	base := env["CLOUDFLARE_API_BASE_URL"]
	if !strings.HasPrefix(base, "http://127.0.0.1:") || strings.HasSuffix(base, ":0/client/v4") || env["CLOUDFLARE_API_TOKEN"] != "tok" || len(env["CLOUDFLARE_ACCOUNT_ID"]) != 32 {
		t.Fatalf("env lines = %v (stderr %s)", env, stderr.String())
	}
	if len(dbLines) != 2 || !strings.Contains(dbLines[0], "# database sample ") || !strings.Contains(dbLines[1], "(1048576 bytes)") {
		t.Errorf("database lines = %q", dbLines)
	}
	req, _ := http.NewRequest("GET", base+"/accounts/"+env["CLOUDFLARE_ACCOUNT_ID"]+"/d1/database", nil)
	req.Header.Set("Authorization", "Bearer tok")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Success bool
		Result  []struct{ Name string }
	}
	json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if !body.Success || len(body.Result) != 2 {
		t.Errorf("list = %+v", body)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.sqlite")); len(m) != 1 {
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
		{[]string{"--no-sample", "--synthetic", "big=lots"}, 1, "", "bad size"},
		{[]string{"--no-sample", "--db", "x=/does/not/exist.sqlite"}, 1, "", "add x"},
		{[]string{"--export-polls", "-1"}, 1, "", "ExportPolls"},
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
