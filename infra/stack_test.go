package main

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
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
	if len(fns) != 7 {
		t.Fatalf("%d functions, want 7", len(fns))
	}
	want := map[string]struct{ memory, timeout float64 }{
		"Discover": {256, 60}, "StartExport": {256, 60}, "PollExport": {256, 60}, "StoreDump": {1024, 900},
		"QueryDump": {1024, 900}, "VerifyBackup": {2048, 900}, "PruneBackups": {256, 300},
	}
	for prefix, w := range want {
		p := fns[st.logicalID(t, "AWS::Lambda::Function", prefix)].Properties
		if p["Runtime"] != "provided.al2023" || js(p["Architectures"]) != `["arm64"]` || p["Handler"] != "bootstrap" {
			t.Errorf("%s: runtime %v, architectures %v, handler %v; want provided.al2023, arm64, bootstrap", prefix, p["Runtime"], p["Architectures"], p["Handler"])
		}
		if p["MemorySize"] != w.memory || p["Timeout"] != w.timeout {
			t.Errorf("%s: memory %v timeout %v, want %v and %v", prefix, p["MemorySize"], p["Timeout"], w.memory, w.timeout)
		}
		vars := p["Environment"].(map[string]any)["Variables"].(map[string]any)
		wantVars := map[string]string{
			config.EnvAccountID: testAccount, config.EnvR2Bucket: "backups", config.EnvCompression: "gzip",
			config.EnvPollInterval: "5s", config.EnvExportTimeout: "1h", config.EnvMaxRestarts: "2",
			config.EnvPartSize: "16MiB", config.EnvDatabases: "*",
		}
		for k, v := range wantVars {
			if vars[k] != v {
				t.Errorf("%s: env %s = %v, want %q", prefix, k, vars[k], v)
			}
		}
		if js(vars[config.EnvSecretARN]) != js(map[string]any{"Ref": st.logicalID(t, "AWS::SecretsManager::Secret", "Credentials")}) {
			t.Errorf("%s: env %s = %v, want the secret's ARN", prefix, config.EnvSecretARN, vars[config.EnvSecretARN])
		}
		for _, k := range []string{config.EnvAPIToken, config.EnvR2AccessKey, config.EnvR2Secret, config.EnvR2Endpoint, config.EnvInclude} {
			if _, ok := vars[k]; ok {
				t.Errorf("%s: env has %s", prefix, k)
			}
		}
		if p["LoggingConfig"] == nil {
			t.Errorf("%s: no log group of its own (retention)", prefix)
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

func TestSchedule(t *testing.T) {
	for _, schedule := range []string{"", "rate(6 hours)"} {
		overrides := map[string]any{}
		want := config.Defaults().Schedule
		if schedule != "" {
			overrides["schedule"] = schedule
			want = schedule
		}
		st := synth(t, overrides)
		rules := st.ofType("AWS::Events::Rule")
		if len(rules) != 1 {
			t.Fatalf("%d rules, want 1", len(rules))
		}
		for _, r := range rules {
			p := r.Properties
			if p["ScheduleExpression"] != want || p["State"] != "ENABLED" {
				t.Errorf("rule %v %v, want %s ENABLED", p["ScheduleExpression"], p["State"], want)
			}
			target := p["Targets"].([]any)[0].(map[string]any)
			if js(target["Arn"]) != js(map[string]any{"Ref": st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupRun")}) {
				t.Errorf("rule target %v, want the run state machine", target["Arn"])
			}
		}
	}
}

func TestAlarms(t *testing.T) {
	st := synth(t, nil)
	topic := st.logicalID(t, "AWS::SNS::Topic", "Alarms")
	type key struct{ machine, metric string }
	got := map[key]bool{}
	var stale []map[string]any
	for id, a := range st.ofType("AWS::CloudWatch::Alarm") {
		p := a.Properties
		if js(p["AlarmActions"]) != js([]any{map[string]any{"Ref": topic}}) {
			t.Errorf("%s: actions %v, want the topic", id, p["AlarmActions"])
		}
		if p["Namespace"] == config.MetricNamespace {
			stale = append(stale, p)
			continue
		}
		if p["Threshold"] != float64(1) || p["ComparisonOperator"] != "GreaterThanOrEqualToThreshold" || p["TreatMissingData"] != "notBreaching" {
			t.Errorf("%s: fires on %v %v (missing data %v), want >= 1", id, p["ComparisonOperator"], p["Threshold"], p["TreatMissingData"])
		}
		dims := p["Dimensions"].([]any)
		ref := dims[0].(map[string]any)["Value"].(map[string]any)["Ref"].(string)
		got[key{ref, p["MetricName"].(string)}] = true
	}
	for _, sm := range []string{"BackupDatabase", "BackupRun"} {
		id := st.logicalID(t, "AWS::StepFunctions::StateMachine", sm)
		for _, metric := range []string{"ExecutionsFailed", "ExecutionsTimedOut"} {
			if !got[key{id, metric}] {
				t.Errorf("no alarm on %s of %s", metric, sm)
			}
		}
	}
	if len(st.ofType("AWS::SNS::Subscription")) != 0 {
		t.Error("e-mail subscription without alarmEmail")
	}
	// With databases "*", one silence alarm watches the total.
	if len(stale) != 1 {
		t.Fatalf("%d no-recent-backup alarms, want 1", len(stale))
	}
	checkStale(t, stale[0], nil)
}

// checkStale asserts a "no successful backup for N hours" alarm: it fires
// when the BackupSucceeded sum over the period is below 1, and treats
// missing data (silence) as breaching.
func checkStale(t *testing.T, p map[string]any, dims []any) {
	t.Helper()
	if p["MetricName"] != config.MetricBackupSucceeded || p["Statistic"] != "Sum" || p["Period"] != float64(36*3600) ||
		p["ComparisonOperator"] != "LessThanThreshold" || p["Threshold"] != float64(1) || p["TreatMissingData"] != "breaching" {
		t.Errorf("no-recent-backup alarm %s", js(p))
	}
	if js(p["Dimensions"]) != js(dims) {
		t.Errorf("alarm dimensions %s, want %s", js(p["Dimensions"]), js(dims))
	}
}

func TestStaleAlarmsPerDatabase(t *testing.T) {
	st := synth(t, map[string]any{"databases": "shop,blog", "staleAfterHours": "36"})
	var got []string
	for _, a := range st.ofType("AWS::CloudWatch::Alarm") {
		p := a.Properties
		if p["Namespace"] != config.MetricNamespace {
			continue
		}
		dims := p["Dimensions"].([]any)
		checkStale(t, p, dims)
		d := dims[0].(map[string]any)
		if d["Name"] != config.MetricDimensionDatabase {
			t.Errorf("dimension %v, want %s", d["Name"], config.MetricDimensionDatabase)
		}
		got = append(got, d["Value"].(string))
	}
	slices.Sort(got)
	if js(got) != `["blog","shop"]` {
		t.Errorf("no-recent-backup alarms for %v, want blog and shop", got)
	}
}

func TestAlarmEmail(t *testing.T) {
	st := synth(t, map[string]any{"alarmEmail": "ops@example.com"})
	try(t, func() {
		st.assert.ResourceCountIs(jsii.String("AWS::SNS::Subscription"), jsii.Number(1))
		st.assert.HasResourceProperties(jsii.String("AWS::SNS::Subscription"), map[string]any{
			"Protocol": "email", "Endpoint": "ops@example.com",
			"TopicArn": map[string]any{"Ref": st.logicalID(t, "AWS::SNS::Topic", "Alarms")},
		})
	})
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

func TestSecretReadOnlyByFunctions(t *testing.T) {
	st := synth(t, nil)
	secret := st.logicalID(t, "AWS::SecretsManager::Secret", "Credentials")
	p := st.Resources[secret].Properties
	gen := p["GenerateSecretString"].(map[string]any)
	var tmpl map[string]string
	if err := json.Unmarshal([]byte(gen["SecretStringTemplate"].(string)), &tmpl); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{config.EnvAPIToken: "", config.EnvR2AccessKey: "", config.EnvR2Secret: ""}; !maps.Equal(tmpl, want) {
		t.Errorf("secret template %v, want %v", tmpl, want)
	}
	if _, ok := p["SecretString"]; ok {
		t.Error("secret value in the template")
	}

	var readers []string
	for _, s := range st.statements() {
		if slices.Contains(s.actions, "secretsmanager:GetSecretValue") {
			if s.resources != js(map[string]any{"Ref": secret}) {
				t.Errorf("GetSecretValue on %s, want only the secret", s.resources)
			}
			readers = append(readers, s.roles...)
		}
	}
	var want []string
	for _, fn := range []string{"Discover", "StartExport", "PollExport", "StoreDump", "QueryDump", "Verify", "Prune"} {
		want = append(want, st.roleOf(t, "AWS::Lambda::Function", fn))
	}
	sort.Strings(readers)
	sort.Strings(want)
	if !slices.Equal(readers, want) {
		t.Errorf("roles that read the secret %v, want the seven function roles %v", readers, want)
	}
}

func TestImportedSecret(t *testing.T) {
	for _, arn := range []string{
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup-AbC123",
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup",
	} {
		st := synth(t, map[string]any{"secretArn": arn})
		if n := len(st.ofType("AWS::SecretsManager::Secret")); n != 0 {
			t.Errorf("%s: %d secrets created, want the imported one only", arn, n)
		}
		for _, fn := range st.ofType("AWS::Lambda::Function") {
			if got := fn.Properties["Environment"].(map[string]any)["Variables"].(map[string]any)[config.EnvSecretARN]; got != arn {
				t.Errorf("env %s = %v, want %s", config.EnvSecretARN, got, arn)
			}
		}
		n := 0
		for _, s := range st.statements() {
			if slices.Contains(s.actions, "secretsmanager:GetSecretValue") {
				n++
				if !strings.Contains(s.resources, "secret:d1backup") {
					t.Errorf("%s: GetSecretValue on %s", arn, s.resources)
				}
			}
		}
		if n != 7 {
			t.Errorf("%s: %d GetSecretValue grants, want 7", arn, n)
		}
		if st.Outputs["CredentialsSecretArn"].(map[string]any)["Value"] != arn {
			t.Errorf("output %v, want %s", st.Outputs["CredentialsSecretArn"], arn)
		}
	}
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

func TestStateMachinePermissions(t *testing.T) {
	st := synth(t, nil)
	fnArn := func(prefix string) string {
		return js(map[string]any{"Fn::GetAtt": []any{st.logicalID(t, "AWS::Lambda::Function", prefix), "Arn"}})
	}
	database := st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupDatabase")
	perRole := map[string][]string{} // role -> "action on resource"
	for _, s := range st.statements() {
		for _, r := range s.roles {
			for _, a := range s.actions {
				perRole[r] = append(perRole[r], a+" "+s.resources)
			}
		}
	}
	invoked := func(role string) (fns []string) {
		for _, g := range perRole[role] {
			if strings.HasPrefix(g, "lambda:InvokeFunction ") {
				fns = append(fns, g)
			}
		}
		return fns
	}
	dbRole := st.roleOf(t, "AWS::StepFunctions::StateMachine", "BackupDatabase")
	got := invoked(dbRole)
	for _, fn := range []string{"StartExport", "PollExport", "StoreDump", "QueryDump", "Verify", "Prune"} {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, fnArn(fn)) }) {
			t.Errorf("database state machine may not invoke %s", fn)
		}
	}
	if len(got) != 6 || strings.Contains(strings.Join(got, " "), fnArn("Discover")) {
		t.Errorf("database state machine invokes %v, want exactly its 6 functions", got)
	}

	runRole := st.roleOf(t, "AWS::StepFunctions::StateMachine", "BackupRun")
	if got := invoked(runRole); len(got) != 1 || !strings.Contains(got[0], fnArn("Discover")) {
		t.Errorf("run state machine invokes %v, want only discover", got)
	}
	grants := strings.Join(perRole[runRole], "\n")
	for _, want := range []string{
		"states:StartExecution " + js(map[string]any{"Ref": database}),
		"states:DescribeExecution {\"Fn::Join\"",
		"states:StopExecution {\"Fn::Join\"",
		"events:PutTargets", "events:PutRule", "events:DescribeRule",
		"rule/StepFunctionsGetEventsForStepFunctionsExecutionRule",
	} {
		if !strings.Contains(grants, want) {
			t.Errorf("run state machine lacks %q; has:\n%s", want, grants)
		}
	}
	if !strings.Contains(grants, `":execution:",{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"`+database+`"}]}]},":*"`) {
		t.Errorf("Describe/StopExecution not limited to the database state machine's executions:\n%s", grants)
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
	st := synth(t, map[string]any{"concurrency": "7"})
	embedded := map[string]string{"BackupDatabase": statemachine.BackupDatabase, "BackupRun": statemachine.BackupRun}
	for prefix, want := range embedded {
		r := st.Resources[st.logicalID(t, "AWS::StepFunctions::StateMachine", prefix)]
		raw, resolved := definition(t, r)
		if raw != want {
			t.Errorf("%s: definition differs from the embedded one", prefix)
		}
		asltest.Validate(t, prefix+".asl.json", resolved)
	}
	run := st.Resources[st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupRun")]
	subs := run.Properties["DefinitionSubstitutions"].(map[string]any)
	if subs["MaxConcurrency"] != "7" {
		t.Errorf("MaxConcurrency = %v, want 7", subs["MaxConcurrency"])
	}
	if js(subs["BackupDatabaseStateMachineArn"]) != js(map[string]any{"Ref": st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupDatabase")}) {
		t.Errorf("run starts %v, want the database state machine", subs["BackupDatabaseStateMachineArn"])
	}
}

func TestOutputs(t *testing.T) {
	st := synth(t, nil)
	want := map[string]string{
		"BackupRunStateMachineArn":      st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupRun"),
		"BackupDatabaseStateMachineArn": st.logicalID(t, "AWS::StepFunctions::StateMachine", "BackupDatabase"),
		"CredentialsSecretArn":          st.logicalID(t, "AWS::SecretsManager::Secret", "Credentials"),
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
	if n != 2 {
		t.Errorf("%d state machines in the synthesized template, want 2", n)
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
