package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctions"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/statemachine"
)

// BackupStackProps configures NewBackupStack.
type BackupStackProps struct {
	awscdk.StackProps
	Config config.Config
}

// NewBackupStack defines the whole deployment: the Lambda functions, the
// credentials secret, the per-database and run state machines, the schedule,
// and alarms on failed or timed-out executions.
func NewBackupStack(scope constructs.Construct, id string, props *BackupStackProps) awscdk.Stack {
	stack := awscdk.NewStack(scope, &id, &props.StackProps)
	cfg := props.Config

	secret := credentialsSecret(stack, cfg)

	// Every function gets the same environment, derived from the settings
	// table: the functions share one config loader, and none of these values
	// is secret (the credentials stay in the secret, named here only by ARN).
	env := map[string]*string{config.EnvSecretARN: secret.SecretArn()}
	for k, v := range config.LambdaEnv(cfg) {
		env[k] = jsii.String(v)
	}

	fns := map[string]awslambda.Function{}
	for _, s := range step.Registry {
		logs := awslogs.NewLogGroup(stack, jsii.String(s.State+"Logs"), &awslogs.LogGroupProps{
			Retention:     awslogs.RetentionDays_ONE_MONTH,
			RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
		})
		var storage awscdk.Size
		if s.TmpMiB != nil {
			storage = awscdk.Size_Mebibytes(jsii.Number(float64(s.TmpMiB(cfg))))
		}
		fn := awslambda.NewFunction(stack, jsii.String(s.State), &awslambda.FunctionProps{
			EphemeralStorageSize: storage,
			Description:          jsii.String(s.Description),
			Code:                 awslambda.Code_FromAsset(jsii.String(filepath.Join(cfg.AssetDir, s.Dir())), nil),
			Runtime:              awslambda.Runtime_PROVIDED_AL2023(),
			Architecture:         awslambda.Architecture_ARM_64(),
			Handler:              jsii.String("bootstrap"),
			MemorySize:           jsii.Number(float64(s.MemoryMiB(cfg))),
			Timeout:              awscdk.Duration_Seconds(jsii.Number(s.Timeout.Seconds())),
			Environment:          &env,
			LogGroup:             logs,
			// Step Functions retries failed invocations itself; an
			// asynchronous retry by Lambda would only duplicate work.
			RetryAttempts: jsii.Number(0),
		})
		// Each function talks to Cloudflare (discover, start, poll) or R2
		// (store), so each reads the credentials: granted one by one
		// because a new function should not get them by default.
		secret.GrantRead(fn, nil)
		fns[s.State] = fn
	}

	// The definitions come from files, so CDK cannot see which functions
	// they call: the registry says, and each machine may invoke exactly those.
	substitutions := map[string]map[string]*string{step.MachineDatabase: {}, step.MachineRun: {}}
	for _, s := range step.Registry {
		substitutions[s.Machine][s.FunctionArnPlaceholder()] = fns[s.State].FunctionArn()
	}
	database := stateMachine(stack, step.MachineDatabase, statemachine.BackupDatabase, substitutions[step.MachineDatabase])
	runSubst := substitutions[step.MachineRun]
	runSubst["BackupDatabaseStateMachineArn"] = database.StateMachineArn()
	runSubst["MaxConcurrency"] = jsii.String(strconv.Itoa(cfg.Concurrency))
	run := stateMachine(stack, step.MachineRun, statemachine.BackupRun, runSubst)
	machines := map[string]awsstepfunctions.StateMachine{step.MachineDatabase: database, step.MachineRun: run}
	for _, s := range step.Registry {
		fns[s.State].GrantInvoke(machines[s.Machine])
	}
	// startExecution.sync:2 starts the child, follows it through its
	// executions (and stops it when the run is stopped) and learns of its
	// end through a rule Step Functions manages in the account.
	database.GrantStartExecution(run)
	database.GrantExecution(run, jsii.String("states:DescribeExecution"), jsii.String("states:StopExecution"))
	run.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings("events:PutTargets", "events:PutRule", "events:DescribeRule"),
		Resources: jsii.Strings(*stack.FormatArn(&awscdk.ArnComponents{
			Service:      jsii.String("events"),
			Resource:     jsii.String("rule"),
			ResourceName: jsii.String("StepFunctionsGetEventsForStepFunctionsExecutionRule"),
		})),
	}))

	awsevents.NewRule(stack, jsii.String("Schedule"), &awsevents.RuleProps{
		Description: jsii.String("d1backup: start the scheduled backup run"),
		Schedule:    awsevents.Schedule_Expression(jsii.String(cfg.Schedule)),
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewSfnStateMachine(run, &awseventstargets.SfnStateMachineProps{
			Input: awsevents.RuleTargetInput_FromObject(map[string]any{}),
		})},
	})

	topic := awssns.NewTopic(stack, jsii.String("Alarms"), &awssns.TopicProps{
		DisplayName: jsii.String("d1backup alarms"),
	})
	if cfg.AlarmEmail != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(cfg.AlarmEmail), nil))
	}
	// Both machines alarm: a failed database fails its run too, but the
	// per-database machine is also run on its own (redrives, manual runs).
	for _, sm := range []struct {
		id string
		m  awsstepfunctions.StateMachine
	}{{"BackupDatabase", database}, {"BackupRun", run}} {
		opts := &awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Sum")}
		for _, a := range []struct {
			id, what string
			metric   awscloudwatch.Metric
		}{
			{"Failed", "failed", sm.m.MetricFailed(opts)},
			{"TimedOut", "timed out", sm.m.MetricTimedOut(opts)},
		} {
			alarm := awscloudwatch.NewAlarm(stack, jsii.String(sm.id+a.id+"Alarm"), &awscloudwatch.AlarmProps{
				AlarmDescription:   jsii.String("d1backup: an execution of " + sm.id + " " + a.what + "; open it in the Step Functions console for the cause, fix, then redrive it"),
				Metric:             a.metric,
				Threshold:          jsii.Number(1),
				EvaluationPeriods:  jsii.Number(1),
				ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
				TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
			})
			alarm.AddAlarmAction(awscloudwatchactions.NewSnsAction(topic))
		}
	}

	staleBackupAlarms(stack, cfg, topic)

	for name, v := range map[string]*string{
		"BackupRunStateMachineArn":      run.StateMachineArn(),
		"BackupDatabaseStateMachineArn": database.StateMachineArn(),
		"CredentialsSecretArn":          secret.SecretArn(),
		"AlarmTopicArn":                 topic.TopicArn(),
	} {
		awscdk.NewCfnOutput(stack, jsii.String(name), &awscdk.CfnOutputProps{Value: v})
	}
	return stack
}

// completeSecretARN tells a complete ARN (with the random suffix Secrets
// Manager appends to the name) from a partial one.
var completeSecretARN = regexp.MustCompile(`-[A-Za-z0-9]{6}$`)

// credentialsSecret imports the configured secret or creates one whose keys
// the user fills in after deploying. The template holds only empty values.
func credentialsSecret(stack awscdk.Stack, cfg config.Config) awssecretsmanager.ISecret {
	if cfg.SecretARN != "" {
		if completeSecretARN.MatchString(cfg.SecretARN) {
			return awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("Credentials"), jsii.String(cfg.SecretARN))
		}
		return awssecretsmanager.Secret_FromSecretPartialArn(stack, jsii.String("Credentials"), jsii.String(cfg.SecretARN))
	}
	template, err := json.Marshal(map[string]string{config.EnvAPIToken: "", config.EnvR2AccessKey: "", config.EnvR2Secret: ""})
	if err != nil {
		panic(err)
	}
	return awssecretsmanager.NewSecret(stack, jsii.String("Credentials"), &awssecretsmanager.SecretProps{
		Description: jsii.String("d1backup credentials: fill in " + config.EnvAPIToken + " (Account · D1 · Edit), " +
			config.EnvR2AccessKey + " and " + config.EnvR2Secret + " (an R2 API token)"),
		// CloudFormation generates the value once, at creation, so later
		// deploys never overwrite what the user put in. It insists on
		// generating one key; the functions ignore it.
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			SecretStringTemplate: jsii.String(string(template)),
			GenerateStringKey:    jsii.String("unused"),
		},
		// Deleting the stack must not destroy credentials the user stored.
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
}

// stateMachine creates a standard state machine (redrive needs standard)
// from an embedded definition whose placeholders CloudFormation fills in.
//
// Logging: level ERROR records failed states and executions with their
// input and error, which is what one needs to understand a failure, without
// paying for an event per poll. Execution data may be included because it
// holds nothing secret: credentials never leave the functions and the signed
// dump URL travels sealed between steps.
func stateMachine(stack awscdk.Stack, id, def string, substitutions map[string]*string) awsstepfunctions.StateMachine {
	logs := awslogs.NewLogGroup(stack, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		// The /aws/vendedlogs/ prefix keeps CloudWatch Logs' resource
		// policy from growing with every state machine.
		LogGroupName:  jsii.String("/aws/vendedlogs/states/" + *stack.StackName() + "-" + id),
		Retention:     awslogs.RetentionDays_THREE_MONTHS,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	return awsstepfunctions.NewStateMachine(stack, jsii.String(id), &awsstepfunctions.StateMachineProps{
		DefinitionBody:          awsstepfunctions.DefinitionBody_FromString(jsii.String(def)),
		DefinitionSubstitutions: &substitutions,
		StateMachineType:        awsstepfunctions.StateMachineType_STANDARD,
		Logs: &awsstepfunctions.LogOptions{
			Destination:          logs,
			Level:                awsstepfunctions.LogLevel_ERROR,
			IncludeExecutionData: jsii.Bool(true),
		},
	})
}

// staleBackupAlarms alarm when backups quietly stop: the store step emits a
// BackupSucceeded metric per database (Embedded Metric Format), and a
// database with none for staleAfterHours breaches, missing data included
// (no data is exactly what silence looks like). Databases named in the
// configuration get one alarm each; with "*" one alarm watches the total.
func staleBackupAlarms(stack awscdk.Stack, cfg config.Config, topic awssns.ITopic) {
	period := awscdk.Duration_Hours(jsii.Number(float64(cfg.StaleAfterHours)))
	alarm := func(id, what string, dims map[string]*string) {
		a := awscloudwatch.NewAlarm(stack, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmDescription: jsii.String(fmt.Sprintf("d1backup: no successful backup of %s for %d hours; check the executions (d1backup executions) and the schedule", what, cfg.StaleAfterHours)),
			Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
				Namespace:     jsii.String(config.MetricNamespace),
				MetricName:    jsii.String(config.MetricBackupSucceeded),
				DimensionsMap: &dims,
				Statistic:     jsii.String("Sum"),
				Period:        period,
			}),
			Threshold:          jsii.Number(1),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_BREACHING,
		})
		a.AddAlarmAction(awscloudwatchactions.NewSnsAction(topic))
	}
	if len(cfg.Databases) == 0 || cfg.Databases[0] == "*" {
		alarm("NoRecentBackupAlarm", "any database", map[string]*string{})
		return
	}
	for i, db := range cfg.Databases {
		alarm(fmt.Sprintf("NoRecentBackup%dAlarm", i), "database "+db, map[string]*string{config.MetricDimensionDatabase: jsii.String(db)})
	}
}
