package main

import (
	"slices"
	"testing"

	"github.com/aws/jsii-runtime-go"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/step"
)

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
			if rp, _ := target["RetryPolicy"].(map[string]any); rp["MaximumRetryAttempts"] == nil {
				t.Errorf("rule target retry policy %v, want retries before it counts as failed", target["RetryPolicy"])
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
	// A failed database fails its page and its run: the run alarms (its
	// cause names the databases) and the database's own execution does
	// (also when started on its own); the page, internal, does not.
	for _, sm := range []string{step.MachineDatabase, step.MachineRun} {
		id := st.logicalID(t, "AWS::StepFunctions::StateMachine", sm)
		for _, metric := range []string{"ExecutionsFailed", "ExecutionsTimedOut"} {
			if !got[key{id, metric}] {
				t.Errorf("no alarm on %s of %s", metric, sm)
			}
		}
	}
	if !got[key{st.logicalID(t, "AWS::Events::Rule", "Schedule"), "FailedInvocations"}] {
		t.Error("no alarm on the schedule failing to start the run")
	}
	if n := len(got); n != 5 {
		t.Errorf("%d execution and schedule alarms, want 5: %v", n, got)
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

// A database listed by name is watched by name, one listed by UUID by
// UUID (lower case, as D1 reports it): the dimensions the verify step
// publishes (internal/step TestSucceededMetricDimensions), so the alarms
// clear once backups succeed.
func TestStaleAlarmsPerDatabase(t *testing.T) {
	const uuid = "0B8B1A2C-3D4E-4F50-8A6B-7C8D9E0F1A2B"
	st := synth(t, map[string]any{"databases": "shop,blog," + uuid, "staleAfterHours": "36"})
	var got []string
	for _, a := range st.ofType("AWS::CloudWatch::Alarm") {
		p := a.Properties
		if p["Namespace"] != config.MetricNamespace {
			continue
		}
		dims := p["Dimensions"].([]any)
		checkStale(t, p, dims)
		d := dims[0].(map[string]any)
		got = append(got, d["Name"].(string)+"="+d["Value"].(string))
	}
	slices.Sort(got)
	if want := `["Database=blog","Database=shop","DatabaseId=0b8b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"]`; js(got) != want {
		t.Errorf("no-recent-backup alarms for %v, want %s", got, want)
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
