package main_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/<name>, or rewrites it with -update.
// Golden files are reviewed like code: they are the CLI's contract.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// bare is a world without an emulator, for commands that need none.
func bare(t *testing.T) *world { return &world{dir: t.TempDir()} }

func bareEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}, extra...)
}

// The help of every command d1backup owns (the workflow commands' are
// sfn.go's, changing elsewhere).
var helpCommands = [][]string{{}, {"backup"}, {"list"}, {"status"}, {"verify"}, {"restore"}, {"prune"}, {"version"}}

func TestHelpGolden(t *testing.T) {
	w := bare(t)
	for _, args := range helpCommands {
		name := strings.Join(append([]string{"d1backup"}, args...), "-")
		r := w.run(t, bareEnv(), append(args, "--help")...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%s --help: exit %d, stderr %q", name, r.code, r.stderr)
		}
		golden(t, filepath.Join("help", name+".txt"), r.stdout)
		for _, bad := range []string{"(default -1)", "(default 0)", `(default "")`, "\n      --json                  \n"} {
			if strings.Contains(r.stdout, bad) {
				t.Errorf("%s --help shows %q", name, bad)
			}
		}
		if len(args) > 0 && !strings.Contains(r.stdout, "      --json ") {
			t.Errorf("%s --help: no --json", name)
		}
		for _, line := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(line, "  -") || strings.HasPrefix(line, "      --") {
				if flagName := strings.Fields(strings.TrimLeft(line, " -h,"))[0]; flagName != "" && strings.Contains(line, " string ") {
					t.Errorf("%s --help: flag %s has no value name: %q", name, flagName, line)
				}
			}
		}
	}
	// Help goes to stdout and exits 0 in every spelling.
	for _, args := range [][]string{{"help", "backup"}, {"backup", "-h"}} {
		if r := w.run(t, bareEnv(), args...); r.code != 0 || !strings.Contains(r.stdout, "Usage:\n  d1backup backup") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.stdout)
		}
	}
}

// TestUsageMistakes: every mistake on the command line is one line on
// stderr, names the command once, and exits 2, before anything is
// contacted or written.
func TestUsageMistakes(t *testing.T) {
	w := bare(t)
	os.WriteFile(filepath.Join(w.dir, "junk.key"), []byte("not an identity\n"), 0o600) //nolint:errcheck
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"bakup"}, `unknown command "bakup"`},
		{[]string{"backup", "--databse", "x"}, "unknown flag: --databse"},
		{[]string{"backup"}, "give --database <uuid|name> (repeatable) or --all"},
		{[]string{"backup", "--all", "--database", "x"}, "not both"},
		{[]string{"backup", "--database", "x", "--include", "a*"}, "--include and --exclude filter --all"},
		{[]string{"backup", "--database", ""}, "--database needs a UUID or a name"},
		{[]string{"backup", "--database", "x", "extra"}, `unexpected argument "extra"`},
		{[]string{"backup", "--all", "--age-recipient", "junk"}, `"junk" is not an age public key`},
		{[]string{"backup", "--all", "--dest", "r2://"}, `destination "r2://": no bucket`},
		{[]string{"backup", "--all", "--dest", "ftp://x/y"}, `unknown scheme "ftp"`},
		{[]string{"backup", "--all", "--include", "[a"}, "is not a glob pattern"},
		{[]string{"backup", "--all", "--concurrency", "0"}, "must be a whole number from 1 to 40"},
		{[]string{"backup", "--all", "--compression", "lz4"}, "must be one of gzip, zstd, none"},
		{[]string{"backup", "--all", "--poll-interval", "fast"}, "must be a duration"},
		{[]string{"backup", "--all", "--part-size", "1KiB"}, "must be a size from 5MiB"},
		{[]string{"status", "--stale-after", "0"}, "must be a whole number from 1 to 168"},
		{[]string{"status", "--stale-after", "36h"}, "must be a whole number"},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"list", "--last", "-1"}, "--last must not be negative"},
		{[]string{"verify"}, "give one backup"},
		{[]string{"verify", "a", "b"}, "give one backup"},
		{[]string{"verify", "not-a-backup"}, `"not-a-backup" is not a backup`},
		{[]string{"verify", "shop@yesterday"}, "use <database>@latest or <database>@<ID>"},
		{[]string{"verify", "3fa85f64", "--identity", "missing.key"}, "--identity: open missing.key"},
		{[]string{"verify", "3fa85f64", "--identity", "junk.key"}, "--identity junk.key"},
		{[]string{"restore", "3fa85f64"}, "give exactly one target"},
		{[]string{"restore", "a", "b", "--to-sqlite", "x"}, "accepts at most 1 arg"},
		{[]string{"restore", "--create", "x"}, "which backup?"},
		{[]string{"restore", "3fa85f64", "--create", "x", "--force"}, "--force does not apply to --create"},
		{[]string{"prune"}, "no retention policy"},
		{[]string{"prune", "--keep-last", "-3"}, "must be a whole number from 0"},
		{[]string{"prune", "--timezone", "Mars/Base"}, "IANA time zone"},
		{[]string{"version", "x"}, `unexpected argument "x"`},
	} {
		r := w.run(t, bareEnv(), tt.args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2\nstderr: %s", tt.args, r.code, r.stderr)
			continue
		}
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
			t.Errorf("%v: stderr %q, want one line containing %q", tt.args, r.stderr, tt.want)
		}
		if !strings.HasPrefix(lines[0], "d1backup") || strings.Contains(lines[0], ": backup: ") || strings.Contains(lines[0], ": restore: ") || strings.Contains(lines[0], ": d1: ") {
			t.Errorf("%v: repeated prefix in %q", tt.args, lines[0])
		}
		if r.stdout != "" {
			t.Errorf("%v: stdout %q, want nothing", tt.args, r.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(w.dir, "d1-backups")); err == nil {
		t.Error("a usage mistake created ./d1-backups")
	}
}

func TestCompletion(t *testing.T) {
	w := bare(t)
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		r := w.run(t, bareEnv(), "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, "d1backup") || len(r.stdout) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes", shell, r.code, len(r.stdout))
		}
	}
	r := w.run(t, bareEnv(), "__complete", "backup", "--compression", "")
	for _, c := range []string{"gzip", "zstd", "none"} {
		if !strings.Contains(r.stdout, c+"\n") {
			t.Errorf("--compression completions %q lack %s", r.stdout, c)
		}
	}
	r = w.run(t, bareEnv(), "__complete", "")
	for _, c := range []string{"backup", "list", "status", "verify", "restore", "prune"} {
		if !strings.Contains(r.stdout, c+"\t") {
			t.Errorf("command completions lack %s:\n%s", c, r.stdout)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	r := bare(t).run(t, bareEnv(), "version", "--json")
	var v struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); r.code != 0 || err != nil || v.Version == "" {
		t.Errorf("version --json: exit %d, %q (%v)", r.code, r.stdout, err)
	}
}

// decode parses a --json output, failing the test when it is not one.
func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not the expected JSON: %v\n%s", err, out)
	}
	return v
}

// shape describes a JSON document's structure, one "path: type" line per
// field (arrays merge their elements' shapes): what scripts rely on, without
// the values that change from run to run.
func shape(t *testing.T, doc string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	set := map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			set[path+": object"] = true
			for k, x := range v {
				if strings.HasSuffix(path, ".tables") {
					k = "<table>" // a map keyed by table name
				}
				walk(path+"."+k, x)
			}
		case []any:
			set[path+": array"] = true
			for _, x := range v {
				walk(path+"[]", x)
			}
		case string:
			set[path+": string"] = true
		case float64:
			set[path+": number"] = true
		case bool:
			set[path+": bool"] = true
		case nil:
			set[path+": null"] = true
		default:
			set[path+": "+fmt.Sprintf("%T", v)] = true
		}
	}
	walk("", v)
	lines := make([]string, 0, len(set))
	for l := range set {
		lines = append(lines, l)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
