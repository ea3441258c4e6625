package main

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctions"
	"github.com/aws/jsii-runtime-go"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/step"
)

// alarms creates the schedule, the alarm topic and the alarms: failed or
// timed-out runs and database backups (a page fails only with them), a
// schedule that could not start the run, and backups that quietly stop.
func alarms(stack awscdk.Stack, cfg config.Config, machines map[string]awsstepfunctions.StateMachine) awssns.Topic {
	topic := awssns.NewTopic(stack, jsii.String("Alarms"), &awssns.TopicProps{
		DisplayName: jsii.String("d1backup alarms"),
	})
	if cfg.AlarmEmail != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(cfg.AlarmEmail), nil))
	}
	alarm := func(id, description string, metric awscloudwatch.IMetric, op awscloudwatch.ComparisonOperator, missing awscloudwatch.TreatMissingData) {
		a := awscloudwatch.NewAlarm(stack, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmDescription:   jsii.String(description),
			Metric:             metric,
			Threshold:          jsii.Number(1),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: op,
			TreatMissingData:   missing,
		})
		a.AddAlarmAction(awscloudwatchactions.NewSnsAction(topic))
	}
	atLeastOnce := awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD
	fiveMinutes := &awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Sum")}

	for _, name := range []string{step.MachineRun, step.MachineDatabase} {
		m := machines[name]
		what := map[string]string{
			step.MachineRun:      "a scheduled run of " + name + " %s; its cause names the databases: fix, then redrive it (d1backup redrive <run ARN>), which reruns only the failed databases",
			step.MachineDatabase: "a database backup (" + name + ") %s; its cause is the error of the step that failed: fix, then redrive it, which reruns that step",
		}[name]
		alarm(name+"FailedAlarm", "d1backup: "+fmt.Sprintf(what, "failed"), m.MetricFailed(fiveMinutes), atLeastOnce, awscloudwatch.TreatMissingData_NOT_BREACHING)
		alarm(name+"TimedOutAlarm", "d1backup: "+fmt.Sprintf(what, "timed out"), m.MetricTimedOut(fiveMinutes), atLeastOnce, awscloudwatch.TreatMissingData_NOT_BREACHING)
	}

	rule := awsevents.NewRule(stack, jsii.String("Schedule"), &awsevents.RuleProps{
		Description: jsii.String("d1backup: start the scheduled backup run"),
		Schedule:    awsevents.Schedule_Expression(jsii.String(cfg.Schedule)),
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewSfnStateMachine(machines[step.MachineRun], &awseventstargets.SfnStateMachineProps{
			Input:         awsevents.RuleTargetInput_FromObject(map[string]any{}),
			RetryAttempts: jsii.Number(4),
			MaxEventAge:   awscdk.Duration_Hours(jsii.Number(2)),
		})},
	})
	alarm("ScheduleFailedAlarm", "d1backup: the schedule could not start the backup run (EventBridge FailedInvocations, after its retries): check the rule's target and the state machine",
		awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String("AWS/Events"), MetricName: jsii.String("FailedInvocations"),
			DimensionsMap: &map[string]*string{"RuleName": rule.RuleName()},
			Statistic:     jsii.String("Sum"), Period: awscdk.Duration_Minutes(jsii.Number(5)),
		}), atLeastOnce, awscloudwatch.TreatMissingData_NOT_BREACHING)

	staleBackupAlarms(cfg, func(id, what string, dims map[string]*string) {
		alarm(id, fmt.Sprintf("d1backup: no verified backup of %s for %d hours; check the executions (d1backup executions) and the schedule", what, cfg.StaleAfterHours),
			awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
				Namespace: jsii.String(config.MetricNamespace), MetricName: jsii.String(config.MetricBackupSucceeded),
				DimensionsMap: &dims, Statistic: jsii.String("Sum"),
				Period: awscdk.Duration_Hours(jsii.Number(float64(cfg.StaleAfterHours))),
			}),
			awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD, awscloudwatch.TreatMissingData_BREACHING)
	})
	return topic
}

// staleBackupAlarms alarm when backups quietly stop: the verify step
// publishes BackupSucceeded once a backup is verified (or verification was
// skipped for a stated reason), and a window of staleAfterHours without one
// breaches, missing data included (no data is exactly what silence looks
// like). A database listed in the configuration gets its own alarm on the
// dimension it is listed by (DatabaseId for a UUID, Database for a name: the
// step publishes it the same way); with "*" one alarm watches the total.
// The window is one period of staleAfterHours (at most 168 hours: a
// CloudWatch alarm evaluates at most 7 days).
func staleBackupAlarms(cfg config.Config, alarm func(id, what string, dims map[string]*string)) {
	if len(cfg.Databases) == 0 || cfg.Databases[0] == "*" {
		alarm("NoRecentBackupAlarm", "any database", map[string]*string{})
		return
	}
	for i, db := range cfg.Databases {
		if d1.IsUUID(db) {
			alarm(fmt.Sprintf("NoRecentBackup%dAlarm", i), "database "+db, map[string]*string{config.MetricDimensionDatabaseID: jsii.String(strings.ToLower(db))})
			continue
		}
		alarm(fmt.Sprintf("NoRecentBackup%dAlarm", i), "database "+db, map[string]*string{config.MetricDimensionDatabase: jsii.String(db)})
	}
}
