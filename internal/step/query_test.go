package step_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/internal/testenv"
)

// TestQueryDumpHandler: the start step sends a database D1 cannot export to
// the query step (status "query"), which stores it; verify and prune take
// its output like the store step's, and the warning rides along to the
// workflow's result.
func TestQueryDumpHandler(t *testing.T) {
	s := testenv.RequireS3(t)
	emu := d1emutest.Start(t, d1emu.Options{})
	emu.MustCreateFTS5(t, "search")
	h, metrics := handlers(t, emu, s, step.Options{Cloudflare: true, Store: true, Seal: true}, "D1BACKUP_KEEP_LAST=1")
	ctx := context.Background()
	exp, err := h.StartExport(ctx, invocation(step.ExportState{Export: backup.Export{DatabaseName: "search"}}, nil))
	if err != nil || exp.Status != backup.StatusQuery {
		t.Fatalf("start = %+v (%v), want status query", exp, err)
	}
	sum, err := h.QueryDump(ctx, exp.Export)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Method != backup.MethodQuery || sum.Consistent == nil || !*sum.Consistent || len(sum.Warnings) != 1 {
		t.Errorf("query step = %+v, want a consistent query backup with one warning", sum)
	}
	if !strings.Contains(metrics.String(), `"BlockedSeconds":0`) {
		t.Errorf("metrics %q, want a backup that blocked nothing", metrics.String())
	}
	res, err := h.Verify(ctx, step.Result{Summary: sum})
	if err != nil || res.Verification.Status != "verified" || res.Verification.Tables["articles"] != 4 {
		t.Fatalf("verify = %+v (%v), want verified with 4 articles", res.Verification, err)
	}
	if !strings.Contains(metrics.String(), `"BackupSucceeded":1`) {
		t.Errorf("metrics %q, want a success once verified", metrics.String())
	}
	res, err = h.Prune(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(res)
	for _, want := range []string{`"method":"query"`, `"consistent":true`, `"warnings":["articles_cl: contentless`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("workflow result %s lacks %s", out, want)
		}
	}
	// Input that is not the start step's "query" is refused.
	if _, err := h.QueryDump(ctx, backup.Export{DatabaseName: "search", Status: backup.StatusComplete}); step.ErrorType(err) != "ConfigError" {
		t.Errorf("query step on a complete export = %v, want ConfigError", err)
	}
}

// TestQueryDumpStep runs `d1backup step query-dump` as the local simulation
// and the Lambda runtime would: JSON in, JSON out, errors as errorType.
func TestQueryDumpStep(t *testing.T) {
	s := testenv.RequireS3(t)
	emu := d1emutest.Start(t, d1emu.Options{})
	db := emu.MustCreateFTS5(t, "search")
	eu := emu.MustCreate(t, "search-eu", d1emu.FTS5SQL(), d1emu.WithJurisdiction("eu"))
	bucket := s.NewBucket(t)
	run := func(input string, extra ...string) map[string]any {
		cmd := exec.Command(binary, "step", "query-dump")
		cmd.Stdin = strings.NewReader(input)
		cmd.Env = append(os.Environ(), s.Env(bucket)...)
		cmd.Env = append(cmd.Env, "CLOUDFLARE_ACCOUNT_ID="+emu.AccountID(), "CLOUDFLARE_API_TOKEN="+emu.Token(),
			"CLOUDFLARE_API_BASE_URL="+emu.BaseURL, "D1BACKUP_SECRET_ARNS=")
		cmd.Env = append(cmd.Env, extra...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		var out map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
			t.Fatalf("step printed %q (%v); stderr %s", stdout.String(), err, stderr.String())
		}
		for _, leak := range []string{emu.Token(), s.SecretAccessKey} {
			if strings.Contains(stdout.String()+stderr.String(), leak) {
				t.Errorf("step output leaks %q", leak)
			}
		}
		return out
	}
	out := run(`{"database_id":"` + db.UUID + `","database_name":"search","status":"query"}`)
	if out["method"] != "query" || out["consistent"] != true || !strings.HasPrefix(out["key"].(string), db.UUID+"/") {
		t.Errorf("step output %v, want a consistent query backup", out)
	}
	out = run(`{"database_id":"` + eu.UUID + `","status":"query"}`)
	if out["errorType"] != "ResidencyError" || !strings.Contains(out["errorMessage"].(string), "eu jurisdiction") {
		t.Errorf("EU database into a default bucket: %v, want errorType ResidencyError", out)
	}
	out = run(`{"database_id":"`+eu.UUID+`","status":"query"}`, "D1BACKUP_ALLOW_CROSS_JURISDICTION=true")
	if out["method"] != "query" {
		t.Errorf("EU database, crossing allowed: %v, want a backup", out)
	}
}
