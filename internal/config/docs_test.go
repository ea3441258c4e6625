package config_test

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/config"
)

var update = flag.Bool("update", false, "rewrite the README's settings tables from the settings table")

// TestREADME keeps the README's configuration tables equal to the settings
// table. After adding or changing a setting, run
//
//	go test ./internal/config -run README -update
func TestREADME(t *testing.T) {
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, tt := range []struct{ marker, table string }{
		{"settings-env", config.EnvTable()},
		{"settings-context", config.ContextTable()},
	} {
		re := regexp.MustCompile(`(?s)(<!-- ` + tt.marker + ` -->\n).*?(<!-- /` + tt.marker + ` -->)`)
		m := re.FindStringSubmatch(readme)
		if m == nil {
			t.Errorf("README lacks the <!-- %s --> ... <!-- /%s --> block", tt.marker, tt.marker)
			continue
		}
		want := m[1] + tt.table + m[2]
		if m[0] != want {
			if *update {
				readme = strings.Replace(readme, m[0], want, 1)
				continue
			}
			t.Errorf("README's %s table differs from the settings table; run: go test ./internal/config -run README -update", tt.marker)
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
