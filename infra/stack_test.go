package main

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/statemachine"
	"github.com/d1backup/d1backup/statemachine/asltest"
)

// assetDir holds a placeholder bootstrap per function: the template
// assertions never look inside the assets, and the real build is
// scripts/build-lambdas' job (run by cdk synth).
var assetDir string

func TestMain(m *testing.M) {
	// The test binary doubles as the CDK app, so TestMainCommand can run
	// main exactly as `cdk synth` does.
	if os.Getenv("D1BACKUP_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	// jsii warns on every start under an end-of-life Node. The variable
	// lists the major versions to keep quiet about ("1" silences nothing).
	const silence = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
	os.Setenv(silence, strings.Trim(os.Getenv(silence)+",18,20", ","))
	dir, err := os.MkdirTemp("", "d1backup-assets-")
	if err != nil {
		panic(err)
	}
	for _, d := range step.Registry {
		fn := d.Dir()
		if err := os.MkdirAll(filepath.Join(dir, fn), 0o755); err != nil {
			panic(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fn, "bootstrap"), []byte("placeholder for "+fn), 0o755); err != nil {
			panic(err)
		}
	}
	assetDir = dir
	code := m.Run()
	jsii.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cdkJSONContext is the "context" of cdk.json: the documented defaults and
// the feature flags, applied to every test stack as the CLI would.
func cdkJSONContext(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../cdk.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		App     string
		Context map[string]any
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Context
}

func testContext(t *testing.T, overrides map[string]any) map[string]any {
	ctx := cdkJSONContext(t)
	ctx["cloudflareAccountId"] = testAccount
	ctx["bucket"] = "backups"
	ctx["assetDir"] = assetDir
	maps.Copy(ctx, overrides)
	return ctx
}

// stackTemplate is a synthesized stack: the assertions API and the
// template as plain JSON for checks that are clearer in Go.
type stackTemplate struct {
	cfg       config.Config
	assert    assertions.Template
	Resources map[string]resource
	Outputs   map[string]any
}

type resource struct {
	Type       string
	Properties map[string]any
}

var defaultTemplate *stackTemplate

// synth builds the stack from cdk.json's context plus overrides, through
// the same context parsing main uses.
func synth(t *testing.T, overrides map[string]any) *stackTemplate {
	t.Helper()
	if overrides == nil && defaultTemplate != nil {
		return defaultTemplate
	}
	var st stackTemplate
	try(t, func() {
		ctx := testContext(t, overrides)
		app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx})
		cfg, err := configFromContext(app)
		if err != nil {
			t.Fatal(err)
		}
		stack := NewBackupStack(app, "Test", &BackupStackProps{Config: cfg})
		st.cfg = cfg
		st.assert = assertions.Template_FromStack(stack, nil)
		b, err := json.Marshal(st.assert.ToJSON())
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
	})
	if overrides == nil {
		defaultTemplate = &st
	}
	return &st
}

// try turns the panic of a failed CDK assertion into a test failure.
func try(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%v", r)
		}
	}()
	f()
}

func (st *stackTemplate) ofType(typ string) map[string]resource {
	out := map[string]resource{}
	for id, r := range st.Resources {
		if r.Type == typ {
			out[id] = r
		}
	}
	return out
}

// logicalID finds the one resource of typ whose logical ID starts with prefix.
func (st *stackTemplate) logicalID(t *testing.T, typ, prefix string) string {
	t.Helper()
	var ids []string
	for id := range st.ofType(typ) {
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("%s %s*: found %v, want exactly one", typ, prefix, ids)
	}
	return ids[0]
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestFunctions(t *testing.T) {
	st := synth(t, nil)
	fns := st.ofType("AWS::Lambda::Function")
	if len(fns) != len(step.Registry) {
		t.Fatalf("%d functions, want %d (one per registered step)", len(fns), len(step.Registry))
	}
	want := map[string]struct{ memory, timeout float64 }{
		"Discover": {256, 60}, "ListPage": {256, 120}, "CheckChildren": {256, 300}, "CheckDestination": {256, 60},
		"StartExport": {256, 60}, "PollExport": {256, 60}, "StoreDump": {1024, 900}, "QueryDump": {1024, 900}, "VerifyBackup": {2048, 900}, "PruneBackups": {256, 300},
	}
	for _, d := range step.Registry {
		w, ok := want[d.State]
		if !ok {
			t.Errorf("%s: no expectation", d.State)
			continue
		}
		p := fns[st.logicalID(t, "AWS::Lambda::Function", d.State)].Properties
		if p["Runtime"] != "provided.al2023" || js(p["Architectures"]) != `["arm64"]` || p["Handler"] != "bootstrap" {
			t.Errorf("%s: runtime %v, architectures %v, handler %v; want provided.al2023, arm64, bootstrap", d.State, p["Runtime"], p["Architectures"], p["Handler"])
		}
		if p["MemorySize"] != w.memory || p["Timeout"] != w.timeout {
			t.Errorf("%s: memory %v timeout %v, want %v and %v", d.State, p["MemorySize"], p["Timeout"], w.memory, w.timeout)
		}
		vars := p["Environment"].(map[string]any)["Variables"].(map[string]any)
		wantVars := map[string]string{
			config.EnvAccountID: testAccount, config.EnvR2Bucket: "backups", config.EnvCompression: "gzip",
			config.EnvPollInterval: "5s", config.EnvPollIntervalMax: "1m", config.EnvExportTimeout: "1h", config.EnvMaxRestarts: "2",
			config.EnvPartSize: "16MiB", config.EnvDatabases: "*",
		}
		for k, v := range wantVars {
			if vars[k] != v {
				t.Errorf("%s: env %s = %v, want %q", d.State, k, vars[k], v)
			}
		}
		for _, k := range []string{config.EnvAPIToken, config.EnvR2AccessKey, config.EnvR2Secret, config.EnvSealKey, config.EnvR2Endpoint, config.EnvInclude} {
			if _, ok := vars[k]; ok {
				t.Errorf("%s: env has %s", d.State, k)
			}
		}
		if p["LoggingConfig"] == nil {
			t.Errorf("%s: no log group of its own (retention)", d.State)
		}
	}
	try(t, func() {
		st.assert.AllResourcesProperties(jsii.String("AWS::Logs::LogGroup"), map[string]any{
			"RetentionInDays": assertions.Match_AnyValue(),
		})
	})
}

func TestOptionalEnvironment(t *testing.T) {
	st := synth(t, map[string]any{"r2Endpoint": "https://r2.example.com", "include": "prod-*", "prefix": "d1/", "partSizeMiB": float64(256)})
	try(t, func() {
		st.assert.AllResourcesProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
			"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{
				config.EnvR2Endpoint: "https://r2.example.com", config.EnvInclude: "prod-*", config.EnvPrefix: "d1/",
				config.EnvPartSize: "256MiB",
			})},
		})
	})
	// Bigger parts need more memory in the store step.
	if got := st.Resources[st.logicalID(t, "AWS::Lambda::Function", "StoreDump")].Properties["MemorySize"]; got != float64(1536) {
		t.Errorf("store memory with 256 MiB parts = %v, want 1536", got)
	}
}

// statements returns every IAM statement of the template with the roles its
// policy is attached to.
func (st *stackTemplate) statements() (out []struct {
	roles     []string
	actions   []string
	resources string
}) {
	for _, p := range st.ofType("AWS::IAM::Policy") {
		var roles []string
		for _, r := range p.Properties["Roles"].([]any) {
			roles = append(roles, r.(map[string]any)["Ref"].(string))
		}
		for _, s := range p.Properties["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			s := s.(map[string]any)
			var actions []string
			switch a := s["Action"].(type) {
			case string:
				actions = []string{a}
			case []any:
				for _, x := range a {
					actions = append(actions, x.(string))
				}
			}
			out = append(out, struct {
				roles     []string
				actions   []string
				resources string
			}{roles, actions, js(s["Resource"])})
		}
	}
	return out
}

// roleOf is the logical ID of the role of a function or state machine.
func (st *stackTemplate) roleOf(t *testing.T, typ, prefix string) string {
	t.Helper()
	p := st.Resources[st.logicalID(t, typ, prefix)].Properties
	return p["Role"+map[bool]string{true: "Arn", false: ""}[typ == "AWS::StepFunctions::StateMachine"]].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
}

func TestNoWildcardActions(t *testing.T) {
	st := synth(t, nil)
	for _, s := range st.statements() {
		for _, a := range s.actions {
			if a == "*" || strings.HasSuffix(a, ":*") || strings.HasSuffix(a, "*") {
				t.Errorf("roles %v: wildcard action %q", s.roles, a)
			}
		}
	}
	for id, r := range st.ofType("AWS::IAM::Role") {
		if r.Properties["Policies"] != nil {
			t.Errorf("%s: inline policies escape this test", id)
		}
		managed, _ := r.Properties["ManagedPolicyArns"].([]any)
		for _, m := range managed {
			if !strings.Contains(js(m), "service-role/AWSLambdaBasicExecutionRole") {
				t.Errorf("%s: managed policy %s", id, js(m))
			}
		}
	}
	if n := len(st.ofType("AWS::IAM::ManagedPolicy")); n != 0 {
		t.Errorf("%d managed policies escape this test", n)
	}
}

// invoked lists the functions a role may invoke, by logical ID.
func (st *stackTemplate) invoked(t *testing.T, role string) []string {
	t.Helper()
	var out []string
	for _, s := range st.statements() {
		if !slices.Contains(s.roles, role) || !slices.Contains(s.actions, "lambda:InvokeFunction") {
			continue
		}
		for _, d := range step.Registry {
			id := st.logicalID(t, "AWS::Lambda::Function", d.State)
			if strings.Contains(s.resources, `"`+id+`"`) && !slices.Contains(out, d.State) {
				out = append(out, d.State)
			}
		}
	}
	slices.Sort(out)
	return out
}

// grantsOf lists a role's statements as "action resources" lines.
func (st *stackTemplate) grantsOf(role string) string {
	var lines []string
	for _, s := range st.statements() {
		if slices.Contains(s.roles, role) {
			for _, a := range s.actions {
				lines = append(lines, a+" "+s.resources)
			}
		}
	}
	return strings.Join(lines, "\n")
}

// Each machine may invoke exactly the functions of its Task states, and
// start, follow and stop exactly its child machine's executions.
func TestStateMachinePermissions(t *testing.T) {
	st := synth(t, nil)
	child := map[string]string{step.MachineRun: step.MachinePage, step.MachinePage: step.MachineDatabase}
	for _, m := range step.Machines {
		role := st.roleOf(t, "AWS::StepFunctions::StateMachine", m)
		var want []string
		for _, d := range step.Registry {
			if d.In(m) {
				want = append(want, d.State)
			}
		}
		slices.Sort(want)
		if got := st.invoked(t, role); !slices.Equal(got, want) {
			t.Errorf("%s invokes %v, want %v", m, got, want)
		}
		grants := st.grantsOf(role)
		c, ok := child[m]
		if !ok {
			if strings.Contains(grants, "states:") {
				t.Errorf("%s may touch executions:\n%s", m, grants)
			}
			continue
		}
		id := st.logicalID(t, "AWS::StepFunctions::StateMachine", c)
		for _, want := range []string{
			"states:StartExecution " + js(map[string]any{"Ref": id}),
			"states:DescribeExecution {\"Fn::Join\"", "states:StopExecution {\"Fn::Join\"",
			"events:PutTargets", "events:PutRule", "events:DescribeRule", "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule",
			`":execution:",{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"` + id + `"}]}]},":*"`,
		} {
			if !strings.Contains(grants, want) {
				t.Errorf("%s lacks %q; has:\n%s", m, want, grants)
			}
		}
		if n := strings.Count(grants, "states:StartExecution"); n != 1 {
			t.Errorf("%s may start executions of %d machines, want only %s", m, n, c)
		}
	}
}

// The steps that read the workflow's executions may do exactly that, on
// the machines whose executions they look after.
func TestWorkflowAccess(t *testing.T) {
	st := synth(t, nil)
	db := st.logicalID(t, "AWS::StepFunctions::StateMachine", step.MachineDatabase)
	page := st.logicalID(t, "AWS::StepFunctions::StateMachine", step.MachinePage)
	for fn, want := range map[string][]string{
		"ListPage":      {"states:ListExecutions " + js(map[string]any{"Ref": db}), "states:DescribeExecution"},
		"CheckChildren": {"states:StartExecution", "states:DescribeExecution", "states:RedriveExecution", "states:GetExecutionHistory"},
	} {
		grants := st.grantsOf(st.roleOf(t, "AWS::Lambda::Function", fn))
		for _, w := range want {
			if !strings.Contains(grants, w) {
				t.Errorf("%s lacks %q:\n%s", fn, w, grants)
			}
		}
		if fn == "ListPage" && (strings.Contains(grants, page) || strings.Contains(grants, "Redrive")) {
			t.Errorf("ListPage may touch more than the database backups:\n%s", grants)
		}
	}
	for _, d := range step.Registry {
		if d.Options.StepFunctions {
			continue
		}
		if g := st.grantsOf(st.roleOf(t, "AWS::Lambda::Function", d.State)); strings.Contains(g, "states:") {
			t.Errorf("%s may touch executions:\n%s", d.State, g)
		}
	}
}

// CloudFormation refuses a template whose resources depend on each other
// in a circle (a function named in a definition whose policy names the
// state machine): none may.
func TestNoDependencyCycle(t *testing.T) {
	st := synth(t, nil)
	var raw struct{ Resources map[string]map[string]any }
	b, _ := json.Marshal(st.assert.ToJSON())
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	deps := map[string][]string{}
	for id, r := range raw.Resources {
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if ref, ok := v["Ref"].(string); ok {
					deps[id] = append(deps[id], ref)
				}
				if ga, ok := v["Fn::GetAtt"].([]any); ok {
					deps[id] = append(deps[id], ga[0].(string))
				}
				for _, x := range v {
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(r["Properties"])
		switch d := r["DependsOn"].(type) {
		case string:
			deps[id] = append(deps[id], d)
		case []any:
			for _, x := range d {
				deps[id] = append(deps[id], x.(string))
			}
		}
	}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(id string, path []string)
	visit = func(id string, path []string) {
		switch state[id] {
		case 1:
			t.Fatalf("dependency cycle: %s", strings.Join(append(path, id), " -> "))
		case 2:
			return
		}
		state[id] = 1
		for _, d := range deps[id] {
			if _, ok := raw.Resources[d]; ok {
				visit(d, append(path, id))
			}
		}
		state[id] = 2
	}
	for id := range raw.Resources {
		visit(id, nil)
	}
}

func TestStateMachineLogging(t *testing.T) {
	st := synth(t, nil)
	for id, sm := range st.ofType("AWS::StepFunctions::StateMachine") {
		lc := sm.Properties["LoggingConfiguration"].(map[string]any)
		if lc["Level"] != "ERROR" || lc["IncludeExecutionData"] != true || lc["Destinations"] == nil {
			t.Errorf("%s: logging %v", id, lc)
		}
		if sm.Properties["StateMachineType"] != "STANDARD" {
			t.Errorf("%s: type %v; redrive needs STANDARD", id, sm.Properties["StateMachineType"])
		}
	}
}

// definition rebuilds a state machine's definition from the template and
// fills its placeholders with dummy ARNs standing in for CloudFormation's.
func definition(t *testing.T, r resource) (raw string, resolved string) {
	t.Helper()
	switch d := r.Properties["DefinitionString"].(type) {
	case string:
		raw = d
	case map[string]any:
		// Tokens in the definition become Fn::Join parts.
		for _, part := range d["Fn::Join"].([]any)[1].([]any) {
			if s, ok := part.(string); ok {
				raw += s
			} else {
				raw += "arn:aws:lambda:us-east-1:123456789012:function:token"
			}
		}
	default:
		t.Fatalf("DefinitionString %T", d)
	}
	subs, _ := r.Properties["DefinitionSubstitutions"].(map[string]any)
	vars := map[string]string{}
	for name, v := range subs {
		switch v := v.(type) {
		case string:
			vars[name] = v
		default:
			if strings.Contains(js(v), "Fn::GetAtt") {
				vars[name] = "arn:aws:lambda:us-east-1:123456789012:function:" + name
			} else {
				vars[name] = "arn:aws:states:us-east-1:123456789012:stateMachine:" + name
			}
		}
	}
	if got, want := slices.Sorted(maps.Keys(vars)), statemachine.Placeholders(raw); !slices.Equal(got, want) {
		t.Errorf("substitutions %v, placeholders %v", got, want)
	}
	resolved, err := statemachine.Substitute(raw, vars)
	if err != nil {
		t.Fatal(err)
	}
	return raw, resolved
}

func TestStateMachineDefinitions(t *testing.T) {
	st := synth(t, map[string]any{"concurrency": "6"})
	for name, want := range statemachine.Definitions {
		r := st.Resources[st.logicalID(t, "AWS::StepFunctions::StateMachine", name)]
		raw, resolved := definition(t, r)
		if raw != want {
			t.Errorf("%s: definition differs from the embedded one", name)
		}
		asltest.Validate(t, name+".asl.json", resolved)
	}
	run := st.Resources[st.logicalID(t, "AWS::StepFunctions::StateMachine", step.MachineRun)]
	subs := run.Properties["DefinitionSubstitutions"].(map[string]any)
	if subs["MaxConcurrency"] != "6" {
		t.Errorf("MaxConcurrency = %v, want 6", subs["MaxConcurrency"])
	}
	if js(subs["BackupPageStateMachineArn"]) != js(map[string]any{"Ref": st.logicalID(t, "AWS::StepFunctions::StateMachine", step.MachinePage)}) {
		t.Errorf("run starts %v, want the page state machine", subs["BackupPageStateMachineArn"])
	}
	page := st.Resources[st.logicalID(t, "AWS::StepFunctions::StateMachine", step.MachinePage)]
	if js(page.Properties["DefinitionSubstitutions"].(map[string]any)["BackupDatabaseStateMachineArn"]) != js(map[string]any{"Ref": st.logicalID(t, "AWS::StepFunctions::StateMachine", step.MachineDatabase)}) {
		t.Errorf("page starts %v, want the database state machine", page.Properties["DefinitionSubstitutions"])
	}
}

func TestOutputs(t *testing.T) {
	st := synth(t, nil)
	want := map[string]string{
		"BackupRunStateMachineArn":      st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupRun"),
		"BackupPageStateMachineArn":     st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupPage"),
		"BackupDatabaseStateMachineArn": st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupDatabase"),
		"CloudflareSecretArn":           st.logicalID(t, "AWS::SecretsManager::Secret", "CloudflareCredentials"),
		"R2SecretArn":                   st.logicalID(t, "AWS::SecretsManager::Secret", "R2Credentials"),
		"AlarmTopicArn":                 st.logicalID(t, "AWS::SNS::Topic", "Alarms"),
	}
	for name, id := range want {
		o, _ := st.Outputs[name].(map[string]any)
		if js(o["Value"]) != js(map[string]any{"Ref": id}) {
			t.Errorf("output %s = %v, want Ref %s", name, o["Value"], id)
		}
	}
}

// runMain runs the CDK app as `cdk synth` does: cdk.json's context merged
// with -c values, passed in CDK_CONTEXT_JSON.
func runMain(t *testing.T, ctx map[string]any) (outdir string, stderr string, err error) {
	t.Helper()
	outdir = t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "D1BACKUP_TEST_RUN_MAIN=1", "CDK_OUTDIR="+outdir, "CDK_CONTEXT_JSON="+js(ctx))
	var buf strings.Builder
	cmd.Stderr = &buf
	err = cmd.Run()
	return outdir, buf.String(), err
}

func TestMainCommand(t *testing.T) {
	outdir, stderr, err := runMain(t, testContext(t, nil))
	if err != nil {
		t.Fatalf("synth: %v\n%s", err, stderr)
	}
	b, err := os.ReadFile(filepath.Join(outdir, "D1Backup.template.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct{ Resources map[string]resource }
	if err := json.Unmarshal(b, &tmpl); err != nil {
		t.Fatal(err)
	}
	n := 0
	for id, r := range tmpl.Resources {
		if r.Type == "AWS::StepFunctions::StateMachine" {
			n++
			_, resolved := definition(t, r)
			asltest.Validate(t, id+".asl.json", resolved)
		}
	}
	if n != len(step.Machines) {
		t.Errorf("%d state machines in the synthesized template, want %d", n, len(step.Machines))
	}
}

func TestMainCommandRejectsBadContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  map[string]any
		want string
	}{
		{"bad value", testContext(t, map[string]any{"compression": "lz4"}), `context "compression": must be one of gzip, zstd, none, got "lz4"`},
		{"not built", testContext(t, map[string]any{"assetDir": t.TempDir()}), "lambda discover not built"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := runMain(t, tt.ctx)
			if err == nil {
				t.Fatal("synth succeeded")
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
		})
	}
}

func TestCDKJSON(t *testing.T) {
	b, err := os.ReadFile("../cdk.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		App     string
		Context map[string]any
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.App != "scripts/build-lambdas && go run ./infra" {
		t.Errorf("app = %q", f.App)
	}
	// Every documented default must parse to the built-in default.
	ctx := maps.Clone(f.Context)
	maps.Copy(ctx, required())
	fromJSON, err := parse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := parse(required())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, builtin) {
		t.Errorf("cdk.json defaults\n%+v\ndiffer from the built-in ones\n%+v", fromJSON, builtin)
	}
	for k := range f.Context {
		if !slices.Contains(ContextKeys(), k) && !strings.HasPrefix(k, "@aws-cdk/") {
			t.Errorf("cdk.json context key %q is not read by the app", k)
		}
	}
}
