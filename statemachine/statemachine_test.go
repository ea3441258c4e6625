package statemachine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
		if d.Machine == machine {
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
	if len(defs) != 2 {
		t.Fatalf("found %d *.asl.json files, want 2", len(defs))
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
		{"run", statemachine.BackupRun, placeholdersOf(step.MachineRun, "BackupDatabaseStateMachineArn", "MaxConcurrency")},
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
	got := sm.States["Discover"].ResultSelector["max_concurrency.$"]
	if want := "States.StringToJson('4')"; got != want {
		t.Errorf("max_concurrency = %v, want %q", got, want)
	}
	if got := sm.States["BackupDatabases"].MaxConcurrencyPath; got != "$.max_concurrency" {
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
					if s.Error == "" && s.ErrorPath == "" || s.Cause == "" && s.CausePath == "" {
						t.Errorf("%s: Fail without both an Error and a Cause", sn)
					}
				case "Wait":
					if s.SecondsPath == "" || s.Seconds != nil {
						t.Errorf("%s: Wait must read its interval with SecondsPath", sn)
					}
				case "Task":
					if s.Resource == "arn:aws:states:::lambda:invoke" {
						checkLambdaTask(t, m, sn, s)
					}
				}
			}
		})
	}
}

// checkLambdaTask asserts the error handling every Lambda task shares.
func checkLambdaTask(t *testing.T, m machine, name string, s state) {
	t.Helper()
	if s.TimeoutSeconds == 0 {
		t.Errorf("%s: no TimeoutSeconds (aws-local-stepfunctions would time it out at 60 s)", name)
	}
	if !strings.HasPrefix(s.Parameters["FunctionName"].(string), "${") {
		t.Errorf("%s: FunctionName %v is not a placeholder", name, s.Parameters["FunctionName"])
	}
	retried := map[string]bool{}
	for _, r := range s.Retry {
		if r.BackoffRate < 2 || r.MaxAttempts < 3 || r.MaxDelaySeconds == 0 || r.JitterStrategy != "FULL" {
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
	if len(s.Catch) == 0 {
		t.Fatalf("%s: no Catch", name)
	}
	last := s.Catch[len(s.Catch)-1]
	if !slices.Equal(last.ErrorEquals, []string{"States.ALL"}) || last.ResultPath != "$.error" {
		t.Errorf("%s: last catcher = %+v, want States.ALL into $.error", name, last)
	}
	fail := m.States[last.Next]
	if fail.Type != "Fail" || fail.ErrorPath != "$.error.Error" || fail.CausePath != "$.error.Cause" {
		t.Errorf("%s: States.ALL goes to %s %+v, want a Fail reporting $.error.Error and $.error.Cause", name, last.Next, fail)
	}
}

func TestBackupDatabaseFlow(t *testing.T) {
	m := parse(t, statemachine.BackupDatabase)
	if m.StartAt != "StartExport" {
		t.Errorf("StartAt = %s", m.StartAt)
	}
	for _, tt := range []struct{ task, next string }{{"StartExport", "ExportStatus"}, {"PollExport", "ExportStatus"}, {"StoreDump", "VerifyBackup"}, {"VerifyBackup", "PruneBackups"}, {"PruneBackups", "BackupStored"}} {
		if got := m.States[tt.task].Next; got != tt.next {
			t.Errorf("%s.Next = %s, want %s", tt.task, got, tt.next)
		}
	}
	for task, want := range map[string]int{"StartExport": 60, "PollExport": 60, "StoreDump": 900, "VerifyBackup": 900, "PruneBackups": 300} {
		if got := m.States[task].TimeoutSeconds; got != want {
			t.Errorf("%s.TimeoutSeconds = %d, want %d", task, got, want)
		}
	}

	choice := m.States["ExportStatus"]
	got := map[string]string{}
	for _, c := range choice.Choices {
		if c.Variable != "$.status" {
			t.Errorf("choice on %s, want $.status", c.Variable)
		}
		got[c.StringEquals] = c.Next
	}
	want := map[string]string{"complete": "StoreDump", "error": "ExportFailed", "active": "WaitForExport"}
	for status, next := range want {
		if got[status] != next {
			t.Errorf("status %s goes to %q, want %s", status, got[status], next)
		}
	}
	if m.States[choice.Default].Type != "Fail" {
		t.Errorf("default choice %s is not a Fail state", choice.Default)
	}
	if w := m.States["WaitForExport"]; w.SecondsPath != "$.poll_interval_seconds" || w.Next != "PollExport" {
		t.Errorf("WaitForExport = %+v", w)
	}
	if f := m.States["ExportFailed"]; f.Type != "Fail" || f.CausePath != "$.error" || f.Error == "" {
		t.Errorf("ExportFailed = %+v, want a Fail with D1's error as cause", f)
	}
	if m.States["BackupStored"].Type != "Succeed" {
		t.Error("BackupStored is not a Succeed state")
	}

	// Restart: only steps that can find the export gone go back to
	// StartExport, and they keep the Export (ResultPath) so StartExport counts
	// the restart.
	for task, wantRestart := range map[string]bool{"StartExport": false, "PollExport": true, "StoreDump": true, "VerifyBackup": false, "PruneBackups": false} {
		found := false
		for _, c := range m.States[task].Catch {
			if c.Next != "StartExport" {
				continue
			}
			found = true
			if !slices.Equal(c.ErrorEquals, restart) || c.ResultPath != "$.restart_cause" {
				t.Errorf("%s: restart catcher %+v", task, c)
			}
		}
		if found != wantRestart {
			t.Errorf("%s: restart catcher present = %v, want %v", task, found, wantRestart)
		}
	}
}

func TestBackupRunFlow(t *testing.T) {
	m := parse(t, statemachine.BackupRun)
	if d := m.States["Discover"]; d.Resource != "arn:aws:states:::lambda:invoke" || d.ResultSelector["databases.$"] != "$.Payload.databases" {
		t.Errorf("Discover = %+v", d)
	}
	mp := m.States["BackupDatabases"]
	if mp.Type != "Map" || mp.ItemsPath != "$.databases" || mp.MaxConcurrencyPath == "" || mp.ItemProcessor == nil {
		t.Fatalf("BackupDatabases = %+v", mp)
	}
	child := mp.ItemProcessor.States[mp.ItemProcessor.StartAt]
	if child.Resource != "arn:aws:states:::states:startExecution.sync:2" {
		t.Errorf("iteration resource = %s, want a child execution (startExecution.sync:2)", child.Resource)
	}
	if child.Parameters["StateMachineArn"] != "${BackupDatabaseStateMachineArn}" {
		t.Errorf("StateMachineArn = %v", child.Parameters["StateMachineArn"])
	}
	input, _ := child.Parameters["Input"].(map[string]any)
	if input["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$"] != "$$.Execution.Id" {
		t.Errorf("child Input %v does not link the child to its parent", input)
	}
	for _, r := range child.Retry {
		if slices.Contains(r.ErrorEquals, "States.ALL") || slices.Contains(r.ErrorEquals, "States.TaskFailed") {
			t.Errorf("iteration retries %v: a failed database would be backed up again", r.ErrorEquals)
		}
	}
	if len(child.Catch) != 1 || !slices.Equal(child.Catch[0].ErrorEquals, []string{"States.ALL"}) {
		t.Fatalf("iteration catchers = %+v, want one States.ALL", child.Catch)
	}
	rec := mp.ItemProcessor.States[child.Catch[0].Next]
	if rec.Type != "Pass" || rec.Parameters["failed"] != true || rec.Parameters["database_name.$"] == nil || rec.Parameters["cause.$"] == nil {
		t.Errorf("failure record = %+v", rec)
	}
	if ok := mp.ItemProcessor.States[child.Next]; ok.Type != "Pass" || ok.Parameters["failed"] != false {
		t.Errorf("success record = %+v", ok)
	}
	if f := m.States["SomeBackupsFailed"]; f.Type != "Fail" || !strings.Contains(f.CausePath, "$.failed_names") {
		t.Errorf("SomeBackupsFailed = %+v, want a cause naming the failed databases", f)
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
	// Every class is one of the three kinds the definitions act on.
	for _, c := range step.ErrorClasses() {
		switch c.Kind {
		case backup.Retryable, backup.Restart, backup.Permanent:
		default:
			t.Errorf("class %s has no kind", c.Name)
		}
	}
	m := parse(t, statemachine.BackupDatabase)
	for _, d := range step.Registry {
		if d.Machine != step.MachineDatabase {
			continue
		}
		s, ok := m.States[d.State]
		if !ok {
			t.Errorf("registered step %s has no Task state in the definition", d.State)
			continue
		}
		if fn, _ := s.Parameters["FunctionName"].(string); fn != "${"+d.FunctionArnPlaceholder()+"}" {
			t.Errorf("%s calls %v, want ${%s}", d.State, s.Parameters["FunctionName"], d.FunctionArnPlaceholder())
		}
		retried := map[string]bool{}
		for _, r := range s.Retry {
			for _, e := range r.ErrorEquals {
				retried[e] = true
			}
		}
		for _, e := range retryable {
			if !retried[e] {
				t.Errorf("%s does not retry the retryable class %s", d.State, e)
			}
		}
		for e := range retried {
			if k, ok := known[e]; ok && k != backup.Retryable {
				t.Errorf("%s retries %s, which is not retryable", d.State, e)
			}
		}
	}
}
