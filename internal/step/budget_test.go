package step_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/executions"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/statemachine"
)

// An account of 50,000 databases (D1's limit on Workers Paid) must run
// without any execution's history reaching 25,000 events or any state
// reaching 256 KiB, with names as long as a database name can be.
func TestWorstCaseOf50000Databases(t *testing.T) {
	const databases = 50000
	for _, nameBytes := range []int{16, 64, 255} {
		t.Run(fmt.Sprintf("names of %d bytes", nameBytes), func(t *testing.T) {
			name := strings.Repeat("n", nameBytes)
			target := jsonBytes(step.Target{DatabaseID: strings.Repeat("0", 36), DatabaseName: name})
			perPage := min(step.PageDatabases, step.PageBytes/(target+1))
			pages := (databases + perPage - 1) / perPage

			// History: a first attempt within the budget, three redrives within the limit.
			for _, tt := range []struct {
				what   string
				events func(redrives int) int
			}{
				{"run", func(r int) int { return statemachine.WorstRunEvents(pages, r) }},
				{"page", func(r int) int { return statemachine.WorstPageEvents(perPage, r) }},
			} {
				if got := tt.events(0); got > statemachine.HistoryBudget {
					t.Errorf("%s of %d pages: %d events in the worst case, over the budget %d", tt.what, pages, got, statemachine.HistoryBudget)
				}
				if got := tt.events(3); got > statemachine.HistoryLimit {
					t.Errorf("%s of %d pages redriven 3 times: %d events, over Step Functions' %d", tt.what, pages, got, statemachine.HistoryLimit)
				}
			}

			// Payload: the largest state of a page is after its Map, every
			// database either backed up and failed (its target and its
			// failure record) or skipped (its skipped record).
			runKey := strings.Repeat("k", 38)
			page := executions.Page{Index: pages, After: name, Through: name}
			id := strings.Repeat("0", 36)
			var checkPayload map[string]any
			for _, skippedAll := range []bool{false, true} {
				targets, skipped, results := []step.Target{}, []executions.Skipped{}, []executions.Child{}
				for range perPage {
					if skippedAll {
						skipped = append(skipped, executions.Skipped{DatabaseID: id, DatabaseName: name, Running: executions.Fresh(executions.DatabaseChild(id, runKey), 999)})
						continue
					}
					targets = append(targets, step.Target{DatabaseID: id, DatabaseName: name})
					results = append(results, executions.Child{DatabaseID: id, DatabaseName: name, Error: "StepFunctions.ExecutionLimitExceededException", Execution: executions.Fresh(executions.DatabaseChild(id, runKey), 999), RedrivenAt: 999})
				}
				pageState := map[string]any{"run_key": runKey, "page": page, "max_concurrency": 40, "targets": targets, "skipped": skipped, "results": results, "throttled_seconds": 1800}
				payload := map[string]any{"state": pageState, "execution": execContext(), "state_machine": stateMachineARN, "children": "database"}
				if got := jsonBytes(payload); got > statemachine.PayloadLimit {
					t.Errorf("page of %d databases (all skipped: %v): check step payload %d bytes, over %d", perPage, skippedAll, got, statemachine.PayloadLimit)
				}
				if checkPayload == nil || jsonBytes(payload) > jsonBytes(checkPayload) {
					checkPayload = payload
				}
			}
			specs := make([]executions.Page, pages)
			records := make([]executions.Child, pages)
			for i := range specs {
				specs[i] = page
				records[i] = executions.Child{Page: &executions.Page{Index: i}, Error: "States.TaskFailed", Execution: executions.Fresh(executions.PageChild(runKey, i), 999), RedrivenAt: 999}
			}
			runState := map[string]any{"run_key": runKey, "total": databases, "pages": specs, "max_concurrency": 40, "results": records, "throttled_seconds": 1800}
			if got := jsonBytes(map[string]any{"state": runState, "execution": execContext(), "state_machine": stateMachineARN, "children": "page"}); got > statemachine.PayloadLimit {
				t.Errorf("run of %d pages: check step payload %d bytes, over %d", pages, got, statemachine.PayloadLimit)
			}
			t.Logf("%d databases, names of %d bytes: %d pages of %d; worst run %d events, page %d events; page check payload %d bytes",
				databases, nameBytes, pages, perPage, statemachine.WorstRunEvents(pages, 0), statemachine.WorstPageEvents(perPage, 0), jsonBytes(checkPayload))
		})
	}
}

// The worst case of one database backup with the default settings, and
// with the settings' extremes the configuration refuses.
func TestWorstCaseOfOneDatabase(t *testing.T) {
	def := config.Defaults()
	w := statemachine.DatabaseWorkload{PollInterval: def.PollInterval, PollIntervalMax: def.PollIntervalMax, ExportTimeout: def.ExportTimeout, MaxRestarts: def.MaxRestarts}
	if got := w.WorstEvents(); got > statemachine.HistoryBudget || 4*got > statemachine.HistoryLimit {
		t.Errorf("defaults: %d events in the worst case; want within %d, and 3 redrives within %d", got, statemachine.HistoryBudget, statemachine.HistoryLimit)
	}
	if got := w.Polls(); got != 63 {
		t.Errorf("defaults poll an hour's export %d times, want 63 (5, 10, 20, 40 s, then every 60 s)", got)
	}
	fixed := statemachine.DatabaseWorkload{PollInterval: time.Second, PollIntervalMax: time.Second, ExportTimeout: time.Hour, MaxRestarts: 2}
	if got := fixed.WorstEvents(); got <= statemachine.HistoryBudget {
		t.Errorf("1 s polls without backoff for an hour: %d events, want over the budget (the configuration refuses it)", got)
	}
}

const stateMachineARN = "arn:aws:states:eu-central-1:123456789012:stateMachine:D1BackupBackupDatabase0123456789ABCDEF"

func execContext() step.Execution {
	now := time.Now()
	return step.Execution{ID: "arn:aws:states:eu-central-1:123456789012:execution:D1BackupBackupPage0123456789ABCDEF:" + strings.Repeat("k", 80), Name: strings.Repeat("k", 80), RedriveCount: 999, RedriveTime: &now}
}

func jsonBytes(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return len(b)
}
