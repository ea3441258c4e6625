package statemachine_test

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/statemachine"
	"github.com/d1backup/d1backup/statemachine/asltest"
)

// The error classes of the contract with the Lambda functions (errorType is
// the Go type name of the returned error), from the code that produces them.
var (
	retryable = classNames(backup.Retryable)
	restart   = classNames(backup.Restart)
	lambdaErr = []string{"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"}
)

func classNames(kind backup.Kind) []string {
	var out []string
	for _, c := range step.ErrorClasses() {
		if c.Kind == kind {
			out = append(out, c.Name)
		}
	}
	return out
}

// dummy fills every placeholder with a value of the right shape: each
// registered step's function, and the run's own placeholders.
var dummy = func() map[string]string {
	m := map[string]string{
		"BackupDatabaseStateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:backup-database",
		"BackupPageStateMachineArn":     "arn:aws:states:us-east-1:123456789012:stateMachine:backup-page",
		"MaxConcurrency":                "4",
	}
	for _, d := range step.Registry {
		m[d.FunctionArnPlaceholder()] = "arn:aws:lambda:us-east-1:123456789012:function:" + d.Dir()
	}
	return m
}()

// placeholdersOf lists the function placeholders the registry expects in a
// machine's definition, plus extra ones, sorted.
func placeholdersOf(machine string, extra ...string) []string {
	out := extra
	for _, d := range step.Registry {
		if d.In(machine) {
			out = append(out, d.FunctionArnPlaceholder())
		}
	}
	slices.Sort(out)
	return out
}

func definitions(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.asl.json")
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		defs[f] = string(b)
	}
	if len(defs) != len(step.Machines) {
		t.Fatalf("found %d *.asl.json files, want %d", len(defs), len(step.Machines))
	}
	return defs
}

func TestDefinitionsPassASLValidator(t *testing.T) {
	for name, def := range definitions(t) {
		t.Run(name, func(t *testing.T) {
			asltest.Validate(t, name, def)
			resolved, err := statemachine.Substitute(def, dummy)
			if err != nil {
				t.Fatal(err)
			}
			asltest.Validate(t, "substituted-"+name, resolved)
		})
	}
}

func TestEmbeddedDefinitionsMatchFiles(t *testing.T) {
	defs := definitions(t)
	for file, embedded := range map[string]string{
		"backup-database.asl.json": statemachine.BackupDatabase,
		"backup-page.asl.json":     statemachine.BackupPage,
		"backup-run.asl.json":      statemachine.BackupRun,
	} {
		if defs[file] != embedded {
			t.Errorf("embedded %s differs from the file", file)
		}
	}
}

func TestPlaceholders(t *testing.T) {
	tests := []struct {
		name string
		def  string
		want []string
	}{
		{"database", statemachine.BackupDatabase, placeholdersOf(step.MachineDatabase)},
		{"page", statemachine.BackupPage, placeholdersOf(step.MachinePage, "BackupDatabaseStateMachineArn")},
		{"run", statemachine.BackupRun, placeholdersOf(step.MachineRun, "BackupPageStateMachineArn", "MaxConcurrency")},
		{"repeated and sorted", `${B} ${A} ${B}`, []string{"A", "B"}},
		{"none", `{"a": "$.b"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statemachine.Placeholders(tt.def); !slices.Equal(got, tt.want) {
				t.Errorf("Placeholders() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSubstitute(t *testing.T) {
	tests := []struct {
		name    string
		def     string
		vars    map[string]string
		want    string
		wantErr string
	}{
		{"one", `{"F": "${Fn}"}`, map[string]string{"Fn": "arn:x"}, `{"F": "arn:x"}`, ""},
		{"repeated", `${A}-${A}`, map[string]string{"A": "1"}, `1-1`, ""},
		{"extra vars ignored", `${A}`, map[string]string{"A": "1", "B": "2"}, `1`, ""},
		{"no placeholders", `{"x": "$.y"}`, nil, `{"x": "$.y"}`, ""},
		{"not a placeholder", `$A {A} $${A}`, map[string]string{"A": "1"}, `$A {A} $1`, ""},
		{"missing", `${A} ${B} ${C}`, map[string]string{"B": "2"}, "", "statemachine: substitute: no value for A, C"},
		{"quote", `"${A}"`, map[string]string{"A": `a"b`}, "", `statemachine: substitute: value of A may not contain quotes, backslashes or newlines: "a\"b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := statemachine.Substitute(tt.def, tt.vars)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Substitute() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Substitute() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSubstituteMaxConcurrencyBecomesNumber(t *testing.T) {
	def, err := statemachine.Substitute(statemachine.BackupRun, dummy)
	if err != nil {
		t.Fatal(err)
	}
	sm := parse(t, def)
	payload, _ := sm.States["Discover"].Parameters["Payload"].(map[string]any)
	if got, want := payload["max_concurrency.$"], "States.StringToJson('4')"; got != want {
		t.Errorf("max_concurrency = %v, want %q", got, want)
	}
	page := parse(t, statemachine.BackupPage)
	if got := page.States["BackupDatabases"].MaxConcurrencyPath; got != "$.max_concurrency" {
		t.Errorf("MaxConcurrencyPath = %q, want $.max_concurrency", got)
	}
}

// The parts of ASL the structural tests look at.
type machine struct {
	StartAt        string
	TimeoutSeconds int
	QueryLanguage  string
	States         map[string]state
}

type state struct {
	Type, Comment, Resource, Next, Default string
	End                                    bool
	QueryLanguage                          string
	Parameters, ResultSelector             map[string]any
	OutputPath                             string
	ResultPath                             json.RawMessage
	TimeoutSeconds                         int
	Retry                                  []struct {
		ErrorEquals                                   []string
		IntervalSeconds, MaxAttempts, MaxDelaySeconds int
		BackoffRate                                   float64
		JitterStrategy                                string
	}
	Catch []struct {
		ErrorEquals      []string
		ResultPath, Next string
	}
	Choices []struct {
		Variable, StringEquals, Next string
	}
	Seconds                            *int
	SecondsPath                        string
	Error, ErrorPath, Cause, CausePath string
	ItemsPath, MaxConcurrencyPath      string
	MaxConcurrency                     int
	ItemProcessor                      *machine
	Assign, Arguments, Output          any
}

func parse(t *testing.T, def string) machine {
	t.Helper()
	var m machine
	if err := json.Unmarshal([]byte(def), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// all returns every state of m, including those inside Map iterations.
func all(m machine) map[string]state {
	out := map[string]state{}
	for name, s := range m.States {
		out[name] = s
		if s.ItemProcessor != nil {
			for n, s := range all(*s.ItemProcessor) {
				out[n] = s
			}
		}
	}
	return out
}

func TestEveryDefinition(t *testing.T) {
	for name, def := range definitions(t) {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(def, "{%") || strings.Contains(def, "JSONata") {
				t.Error("uses JSONata: aws-local-stepfunctions cannot run it")
			}
			m := parse(t, def)
			if m.QueryLanguage != "" && m.QueryLanguage != "JSONPath" {
				t.Errorf("QueryLanguage = %q", m.QueryLanguage)
			}
			if m.TimeoutSeconds == 0 {
				t.Error("no state machine TimeoutSeconds bounding the execution")
			}
			for sn, s := range all(m) {
				if s.Comment == "" {
					t.Errorf("%s: no Comment", sn)
				}
				if s.Assign != nil || s.Arguments != nil || s.Output != nil || s.QueryLanguage != "" {
					t.Errorf("%s: uses Variables/JSONata fields", sn)
				}
				switch s.Type {
				case "Fail":
					// Redrive reruns the states entered and never exited: a
					// failure routed into a Fail state would fail again at
					// once. Failures end executions at the Task that failed.
					t.Errorf("%s: a Fail state makes redrive a no-op", sn)
				case "Wait":
					if s.SecondsPath == "" || s.Seconds != nil {
						t.Errorf("%s: Wait must read its interval with SecondsPath", sn)
					}
				case "Task":
					if s.Resource == "arn:aws:states:::lambda:invoke" {
						checkLambdaTask(t, sn, s)
					} else {
						checkChildTask(t, sn, s)
					}
				}
			}
		})
	}
}

// checkLambdaTask asserts the error handling every Lambda task shares: the
// recommended retries of Lambda's own errors, every retryable class retried
// with capped jittered backoff, nothing else retried, no catch-all (the
// execution stops at the Task that failed, with its error and cause, so a
// redrive reruns it), and a timeout above the function's.
func checkLambdaTask(t *testing.T, name string, s state) {
	t.Helper()
	def, ok := registered(name)
	if !ok {
		t.Errorf("%s: not a registered step", name)
		return
	}
	if got, want := time.Duration(s.TimeoutSeconds)*time.Second, def.TaskTimeout(); got != want {
		t.Errorf("%s: TimeoutSeconds %s, want %s (the function's %s + %s)", name, got, want, def.Timeout, step.TaskTimeoutMargin)
	}
	if fn, _ := s.Parameters["FunctionName"].(string); fn != "${"+def.FunctionArnPlaceholder()+"}" {
		t.Errorf("%s: FunctionName %v, want ${%s}", name, s.Parameters["FunctionName"], def.FunctionArnPlaceholder())
	}
	retried := map[string]bool{}
	for _, r := range s.Retry {
		if r.BackoffRate < 2 || r.MaxAttempts < 2 || r.MaxDelaySeconds == 0 || r.JitterStrategy != "FULL" {
			t.Errorf("%s: retrier %v lacks a capped, jittered backoff", name, r.ErrorEquals)
		}
		for _, e := range r.ErrorEquals {
			retried[e] = true
		}
	}
	for _, e := range slices.Concat(retryable, lambdaErr) {
		if !retried[e] {
			t.Errorf("%s: does not retry %s", name, e)
		}
	}
	for _, e := range []string{"States.ALL", "States.TaskFailed", "AuthError", "ExportTimeoutError"} {
		if retried[e] {
			t.Errorf("%s: retries %s", name, e)
		}
	}
	for _, c := range s.Catch {
		if slices.Contains(c.ErrorEquals, "States.ALL") || slices.Contains(c.ErrorEquals, "States.TaskFailed") {
			t.Errorf("%s: catches %v: the execution would not stop at the Task that failed", name, c.ErrorEquals)
		}
	}
}

// checkChildTask asserts a Map iteration that runs a child execution: it
// records any failure (so one failed child neither cancels the others nor
// fails the Map, which a redrive would rerun whole) and never retries one.
func checkChildTask(t *testing.T, name string, s state) {
	t.Helper()
	if s.Resource != "arn:aws:states:::states:startExecution.sync:2" {
		t.Errorf("%s: resource %s", name, s.Resource)
	}
	for _, r := range s.Retry {
		if slices.Contains(r.ErrorEquals, "States.ALL") || slices.Contains(r.ErrorEquals, "States.TaskFailed") {
			t.Errorf("%s: retries %v: a failed child would run again", name, r.ErrorEquals)
		}
	}
	if len(s.Catch) != 1 || !slices.Equal(s.Catch[0].ErrorEquals, []string{"States.ALL"}) {
		t.Errorf("%s: catchers %+v, want one States.ALL into a record", name, s.Catch)
	}
	if name, ok := s.Parameters["Name.$"].(string); !ok || !strings.HasPrefix(name, "States.Format(") {
		t.Errorf("%s: child name %v, want a deterministic name from the run key", name, s.Parameters["Name.$"])
	}
	if input, _ := s.Parameters["Input"].(map[string]any); input["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$"] != "$$.Execution.Id" {
		t.Errorf("%s: child Input %v does not link the child to its parent", name, input)
	}
	if s.TimeoutSeconds == 0 {
		t.Errorf("%s: no TimeoutSeconds (aws-local-stepfunctions would time it out at 60 s)", name)
	}
}

func registered(state string) (step.Def, bool) {
	for _, d := range step.Registry {
		if d.State == state {
			return d, true
		}
	}
	return step.Def{}, false
}

// flow checks Task/Choice transitions: from -> next.
func flow(t *testing.T, m machine, edges map[string]string) {
	t.Helper()
	for from, want := range edges {
		if got := m.States[from].Next; got != want {
			t.Errorf("%s.Next = %q, want %s", from, got, want)
		}
	}
}

// choiceTargets maps a Choice state's variables (and tests) to targets.
func choiceTargets(m machine, name string) map[string]string {
	out := map[string]string{"default": m.States[name].Default}
	for _, c := range m.States[name].Choices {
		key := c.Variable
		if c.StringEquals != "" {
			key += "==" + c.StringEquals
		}
		out[key] = c.Next
	}
	return out
}

func TestBackupDatabaseFlow(t *testing.T) {
	m := parse(t, statemachine.BackupDatabase)
	if m.StartAt != "CheckDestination" {
		t.Errorf("StartAt = %s, want the preflight before any export", m.StartAt)
	}
	flow(t, m, map[string]string{
		"CheckDestination": "StartExport", "StartExport": "Started", "WaitToStart": "StartExport",
		"WaitToPoll": "PollExport", "WaitForExport": "PollExport", "PollExport": "ExportStatus",
		"StoreDump": "Stored", "QueryDump": "VerifyBackup", "VerifyBackup": "PruneBackups", "PruneBackups": "BackupStored",
	})
	if rp := string(m.States["CheckDestination"].ResultPath); rp != "null" {
		t.Errorf("CheckDestination ResultPath %s, want null (its input goes on)", rp)
	}
	for name, want := range map[string]map[string]string{
		"Started":      {"$.retry_after_seconds": "WaitToStart", "default": "ExportStatus"},
		"ExportStatus": {"$.retry_after_seconds": "WaitToPoll", "$.status==complete": "StoreDump", "$.status==query": "QueryDump", "default": "WaitForExport"},
		"Stored":       {"$.manifest_key": "VerifyBackup", "default": "StoreDump"},
	} {
		if got := choiceTargets(m, name); !maps.Equal(got, want) {
			t.Errorf("%s routes %v, want %v", name, got, want)
		}
	}
	for wait, path := range map[string]string{"WaitToStart": "$.retry_after_seconds", "WaitToPoll": "$.retry_after_seconds", "WaitForExport": "$.poll_interval_seconds"} {
		if got := m.States[wait].SecondsPath; got != path {
			t.Errorf("%s waits %s, want %s", wait, got, path)
		}
	}
	if m.States["BackupStored"].Type != "Succeed" {
		t.Error("BackupStored is not a Succeed state")
	}
	// The export steps get the execution's context (redrive count and
	// time) beside the state.
	for _, task := range []string{"StartExport", "PollExport"} {
		p, _ := m.States[task].Parameters["Payload"].(map[string]any)
		if p["state.$"] != "$" || p["execution.$"] != "$$.Execution" {
			t.Errorf("%s payload %v, want the state and $$.Execution", task, p)
		}
	}
	// Restart: only steps that can find the export gone go back to
	// StartExport, and they keep the Export (ResultPath) so StartExport counts
	// the restart and the store checkpoint flows on.
	for task, wantRestart := range map[string]bool{"CheckDestination": false, "StartExport": false, "PollExport": true, "StoreDump": true, "VerifyBackup": false, "PruneBackups": false} {
		found := false
		for _, c := range m.States[task].Catch {
			if c.Next != "StartExport" {
				t.Errorf("%s: catcher %+v goes elsewhere than StartExport", task, c)
				continue
			}
			found = true
			if !slices.Equal(c.ErrorEquals, restart) || c.ResultPath != "$.restart_cause" {
				t.Errorf("%s: restart catcher %+v, want %v into $.restart_cause", task, c, restart)
			}
		}
		if found != wantRestart {
			t.Errorf("%s: restart catcher present = %v, want %v", task, found, wantRestart)
		}
	}
}

func TestBackupPageFlow(t *testing.T) {
	m := parse(t, statemachine.BackupPage)
	flow(t, m, map[string]string{"ListPage": "Listed", "WaitToList": "ListPage", "BackupDatabases": "CheckChildren", "CheckChildren": "Checked", "WaitForChildren": "CheckChildren"})
	mp := m.States["BackupDatabases"]
	if mp.Type != "Map" || mp.ItemsPath != "$.targets" || mp.MaxConcurrencyPath != "$.max_concurrency" || string(mp.ResultPath) != `"$.results"` {
		t.Errorf("BackupDatabases = %+v", mp)
	}
	child := mp.ItemProcessor.States[mp.ItemProcessor.StartAt]
	if child.Parameters["StateMachineArn"] != "${BackupDatabaseStateMachineArn}" || child.Parameters["Name.$"] != "States.Format('{}-{}', $.database_id, $.run_key)" {
		t.Errorf("page starts %v named %v", child.Parameters["StateMachineArn"], child.Parameters["Name.$"])
	}
	checkChildren(t, m, "database", "${BackupDatabaseStateMachineArn}")
}

func TestBackupRunFlow(t *testing.T) {
	m := parse(t, statemachine.BackupRun)
	flow(t, m, map[string]string{"Discover": "Discovered", "WaitToDiscover": "Discover", "BackupPages": "CheckChildren", "CheckChildren": "Checked", "WaitForChildren": "CheckChildren"})
	mp := m.States["BackupPages"]
	if mp.Type != "Map" || mp.ItemsPath != "$.pages" || mp.MaxConcurrency != 1 || string(mp.ResultPath) != `"$.results"` {
		t.Errorf("BackupPages = %+v, want one page at a time (a page bounds its databases at once)", mp)
	}
	child := mp.ItemProcessor.States[mp.ItemProcessor.StartAt]
	if child.Parameters["StateMachineArn"] != "${BackupPageStateMachineArn}" || child.Parameters["Name.$"] != "States.Format('{}-p{}', $.run_key, $.page.index)" {
		t.Errorf("run starts %v named %v", child.Parameters["StateMachineArn"], child.Parameters["Name.$"])
	}
	checkChildren(t, m, "page", "${BackupPageStateMachineArn}")
}

// checkChildren asserts a parent's check step: it is given the children's
// state machine and kind, and loops through a Wait while it waits for
// redriven children.
func checkChildren(t *testing.T, m machine, kind, machine string) {
	t.Helper()
	p, _ := m.States["CheckChildren"].Parameters["Payload"].(map[string]any)
	if p["children"] != kind || p["state_machine"] != machine || p["state.$"] != "$" || p["execution.$"] != "$$.Execution" {
		t.Errorf("CheckChildren payload %v", p)
	}
	if got := choiceTargets(m, "Checked"); got["$.wait_seconds"] != "WaitForChildren" || m.States[got["default"]].Type != "Succeed" {
		t.Errorf("Checked routes %v", got)
	}
	// The Map's failure record keeps what the check step needs to name and
	// rerun the child.
	for _, s := range all(m) {
		if s.Type == "Pass" {
			if _, ok := s.Parameters["error.$"]; !ok {
				t.Errorf("failure record %v lacks the error", s.Parameters)
			}
		}
	}
}

// TestErrorClassesMatchTheCode: every error name a definition matches is a
// class the Go code can produce (or one of AWS's own), and every class the
// code produces is handled: retryable ones retried, restart ones caught into
// a new export, by every Task that can meet them.
func TestErrorClassesMatchTheCode(t *testing.T) {
	known := map[string]backup.Kind{}
	for _, c := range step.ErrorClasses() {
		known[c.Name] = c.Kind
	}
	aws := func(e string) bool {
		return strings.HasPrefix(e, "States.") || strings.HasPrefix(e, "Lambda.") || strings.HasPrefix(e, "StepFunctions.")
	}
	for name, def := range definitions(t) {
		for sn, s := range all(parse(t, def)) {
			var names []string
			for _, r := range s.Retry {
				names = append(names, r.ErrorEquals...)
			}
			for _, c := range s.Catch {
				names = append(names, c.ErrorEquals...)
			}
			for _, e := range names {
				if _, ok := known[e]; !ok && !aws(e) {
					t.Errorf("%s %s matches %q, which no step returns", name, sn, e)
				}
			}
		}
	}
	for _, c := range step.ErrorClasses() {
		switch c.Kind {
		case backup.Retryable, backup.Restart, backup.Permanent:
		default:
			t.Errorf("class %s has no kind", c.Name)
		}
	}
	for machineName, def := range statemachine.Definitions {
		m := parse(t, def)
		for _, d := range step.Registry {
			if !d.In(machineName) {
				continue
			}
			s, ok := m.States[d.State]
			if !ok {
				t.Errorf("registered step %s has no Task state in %s", d.State, machineName)
				continue
			}
			for _, r := range s.Retry {
				for _, e := range r.ErrorEquals {
					if k, ok := known[e]; ok && k != backup.Retryable {
						t.Errorf("%s retries %s, which is not retryable", d.State, e)
					}
				}
			}
		}
	}
}
