package step_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/internal/testenv"
	"github.com/d1backup/d1backup/statemachine"
)

type machineStats struct {
	Executions     int `json:"executions"`
	Events         int `json:"events"`
	Transitions    int `json:"transitions"`
	MaxEvents      int `json:"max_events"`
	MaxTransitions int `json:"max_transitions"`
	MaxPayload     int `json:"max_payload_bytes"`
}

type simReport struct {
	report
	Events      int                     `json:"events"`
	Transitions int                     `json:"transitions"`
	MaxPayload  int                     `json:"max_payload_bytes"`
	Machines    map[string]machineStats `json:"machines"`
}

// TestRunAtScale runs the real run and page workflows, with the real
// Discover, ListPage and CheckChildren handlers, over an account of 2,015
// databases, each database's backup a stub execution (the database
// workflow is simulated in the other tests) of which 15 fail. It checks
// that the run pages the account, names the failed databases (the first
// ten, then a count), and that every execution's history and state match
// the model the 50,000-database worst case is computed with.
func TestRunAtScale(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("scale simulation (always run under CI=true)")
	}
	s3 := testenv.RequireS3(t)
	emu := d1emutest.Start(t, d1emu.Options{})
	const ok, failing = 2000, 15
	for i := range ok + failing {
		name := fmt.Sprintf("tenant-%04d-with-a-name-of-some-length", i)
		if i >= ok {
			name = fmt.Sprintf("fail-%02d", i-ok)
		}
		if _, err := emu.AddSyntheticDatabase(name, 1024); err != nil {
			t.Fatal(err)
		}
	}
	var r simReport
	_, stderr := simulateOnce(t, workflowEnv(emu, s3, s3.NewBucket(t), "D1BACKUP_CONCURRENCY=40"), &r, "--machine", "BackupRun",
		"--stub", "BackupDatabase="+filepath.Join(repo, "internal/step/testdata/stub-backup-database.asl.json"))
	wantCause := "backup failed for 15 of 2015 databases in run "
	names := "fail-00, fail-01, fail-02, fail-03, fail-04, fail-05, fail-06, fail-07, fail-08, fail-09 and 5 more."
	if r.Status != "FAILED" || r.Error != "BackupsFailedError" || !strings.Contains(r.Cause, wantCause) || !strings.Contains(r.Cause, names) {
		t.Fatalf("run: %s %s %q, want FAILED BackupsFailedError %q ... %q\nstderr: %s", r.Status, r.Error, r.Cause, wantCause, names, stderr)
	}

	run, page, db := r.Machines["BackupRun"], r.Machines["BackupPage"], r.Machines["BackupDatabase"]
	if db.Executions != ok+failing {
		t.Errorf("%d database executions, want one per database, %d", db.Executions, ok+failing)
	}
	if run.Executions != 1 || page.Executions < 2 {
		t.Fatalf("executions: run %d, pages %d; want 1 run over several pages", run.Executions, page.Executions)
	}
	// The histories follow the model the worst cases are computed with:
	// per page, a Map iteration of 8 events per database, 2 more for each
	// failure record; the failing databases sort first, into the first
	// page, which fails at its check step (no exit, no Succeed).
	sm := struct{ exec, lambda, choice, mapState, child, pass, succeed int }{
		statemachine.EventsExecution, statemachine.EventsLambdaTask, statemachine.EventsChoice, statemachine.EventsMap,
		statemachine.EventsMapIteration + statemachine.EventsSyncTask, statemachine.EventsPass, statemachine.EventsSucceed}
	pageFixed := sm.exec + sm.lambda + sm.choice + sm.mapState
	pages := page.Executions
	wantPages := pages*pageFixed + (ok+failing)*sm.child + failing*sm.pass +
		(pages-1)*(sm.lambda+sm.choice+sm.succeed) + (sm.lambda - 1)
	if page.Events != wantPages {
		t.Errorf("the pages recorded %d events in all, the model says %d", page.Events, wantPages)
	}
	wantRun := sm.exec + sm.lambda + sm.choice + sm.mapState + pages*sm.child + sm.pass + (sm.lambda - 1)
	if run.Events != wantRun {
		t.Errorf("the run recorded %d events, the model says %d", run.Events, wantRun)
	}
	if worst := statemachine.WorstPageEvents(step.PageDatabases, 0); page.MaxEvents > worst {
		t.Errorf("a page recorded %d events, over the model's worst case %d", page.MaxEvents, worst)
	}
	if worst := statemachine.WorstRunEvents(page.Executions, 0); run.MaxEvents > worst {
		t.Errorf("the run recorded %d events, over the model's worst case %d for %d pages", run.MaxEvents, worst, page.Executions)
	}
	for name, m := range r.Machines {
		if m.MaxPayload > statemachine.PayloadLimit/2 {
			t.Errorf("%s: a state of %d bytes, over half of Step Functions' %d", name, m.MaxPayload, statemachine.PayloadLimit)
		}
	}
	if page.MaxPayload > step.PageBytes*4 {
		t.Errorf("a page's largest state %d bytes, more than 4 × PageBytes %d", page.MaxPayload, step.PageBytes)
	}
	t.Logf("2015 databases: run %d events (%d transitions), %d pages of up to %d events and %d bytes of state; %d database executions",
		run.MaxEvents, run.Transitions, page.Executions, page.MaxEvents, page.MaxPayload, db.Executions)
}
