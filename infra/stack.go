package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

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
	"github.com/d1backup/d1backup/statemachine"
)

// BackupStackProps configures NewBackupStack.
type BackupStackProps struct {
	awscdk.StackProps
	Config Config
}

// step describes one Lambda function: a directory under functions/ built
// into <assetDir>/<dir>/bootstrap by scripts/build-lambdas.
type step struct {
	id, dir     string
	description string
	memoryMiB   float64
	timeoutSecs float64
}

// steps lists the functions. Memory is sized per step: the API steps only
// exchange small JSON documents, the store step holds upload parts in memory
// (see storeMemory). The timeouts match the Task TimeoutSeconds in the ASL.
func steps(cfg Config) []step {
	return []step{
		{"Discover", "discover", "d1backup: list the D1 databases to back up", 256, 60},
		{"StartExport", "start-export", "d1backup: start a D1 export", 256, 60},
		{"PollExport", "poll-export", "d1backup: poll a D1 export", 256, 60},
		{"StoreDump", "store-dump", "d1backup: stream a D1 dump into R2 and write its manifest", storeMemory(cfg.PartSizeMiB), 900},
		{"Verify", "verify", "d1backup: prove a stored backup restores into SQLite and record the result", 2048, 900},
		{"Prune", "prune", "d1backup: apply the retention policy to a database's backups", 256, 300},
	}
}

// verifyStorageMiB is the verify function's /tmp: the SQL and the scratch
// database built from it, with room to spare.
func verifyStorageMiB(cfg Config) float64 {
	return float64(min(max(512, 3*cfg.VerifyMaxMiB+512), 10240))
}

// storeMemory leaves room for the parts in flight (the store step uploads 4
// parts at once and fills a fifth) plus the runtime; 1024 MB covers the
// default 16 MiB parts with ample headroom, and more memory also means more
// CPU for compression.
func storeMemory(partSizeMiB int) float64 {
	return float64(min(max(1024, partSizeMiB*5+256), 10240))
}

// FunctionDirs are the functions the stack deploys (directory names under
// functions/ and under the asset directory).
func FunctionDirs() []string {
	var dirs []string
	for _, s := range steps(Config{}) {
		dirs = append(dirs, s.dir)
	}
	return dirs
}

// NewBackupStack defines the whole deployment: the Lambda functions, the
// credentials secret, the per-database and run state machines, the schedule,
// and alarms on failed or timed-out executions.
func NewBackupStack(scope constructs.Construct, id string, props *BackupStackProps) awscdk.Stack {
	stack := awscdk.NewStack(scope, &id, &props.StackProps)
	cfg := props.Config

	secret := credentialsSecret(stack, cfg)

	// Every function gets the same environment: the functions share one
	// config loader, and none of these values is secret (the credentials
	// stay in the secret, named here only by ARN).
	env := map[string]*string{
		config.EnvAccountID:      jsii.String(cfg.AccountID),
		config.EnvSecretARN:      secret.SecretArn(),
		config.EnvR2Bucket:       jsii.String(cfg.Bucket),
		config.EnvCompression:    jsii.String(cfg.Compression),
		config.EnvPollInterval:   jsii.String(strconv.Itoa(cfg.PollIntervalSeconds)),
		config.EnvExportTimeout:  jsii.String(cfg.ExportTimeout.String()),
		config.EnvMaxRestarts:    jsii.String(strconv.Itoa(cfg.MaxRestarts)),
		config.EnvPartSize:       jsii.String(strconv.Itoa(cfg.PartSizeMiB << 20)),
		config.EnvDatabases:      jsii.String(cfg.Databases),
		config.EnvVerifyMaxBytes: jsii.String(strconv.Itoa(cfg.VerifyMaxMiB << 20)),
	}
	for name, v := range map[string]string{
		config.EnvPrefix:        cfg.Prefix,
		config.EnvR2Endpoint:    cfg.R2Endpoint,
		config.EnvInclude:       cfg.Include,
		config.EnvExclude:       cfg.Exclude,
		config.EnvAgeRecipients: cfg.AgeRecipients,
		config.EnvTimeZone:      cfg.TimeZone,
		config.EnvKeepLast:      nonZero(cfg.KeepLast),
		config.EnvKeepDaily:     nonZero(cfg.KeepDaily),
		config.EnvKeepWeekly:    nonZero(cfg.KeepWeekly),
		config.EnvKeepMonthly:   nonZero(cfg.KeepMonthly),
	} {
		if v != "" {
			env[name] = jsii.String(v)
		}
	}

	fns := map[string]awslambda.Function{}
	for _, s := range steps(cfg) {
		logs := awslogs.NewLogGroup(stack, jsii.String(s.id+"Logs"), &awslogs.LogGroupProps{
			Retention:     awslogs.RetentionDays_ONE_MONTH,
			RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
		})
		var storage awscdk.Size
		if s.id == "Verify" {
			storage = awscdk.Size_Mebibytes(jsii.Number(verifyStorageMiB(cfg)))
		}
		fn := awslambda.NewFunction(stack, jsii.String(s.id), &awslambda.FunctionProps{
			EphemeralStorageSize: storage,
			Description:          jsii.String(s.description),
			Code:                 awslambda.Code_FromAsset(jsii.String(filepath.Join(cfg.AssetDir, s.dir)), nil),
			Runtime:              awslambda.Runtime_PROVIDED_AL2023(),
			Architecture:         awslambda.Architecture_ARM_64(),
			Handler:              jsii.String("bootstrap"),
			MemorySize:           jsii.Number(s.memoryMiB),
			Timeout:              awscdk.Duration_Seconds(jsii.Number(s.timeoutSecs)),
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
		fns[s.id] = fn
	}

	database := stateMachine(stack, "BackupDatabase", statemachine.BackupDatabase, map[string]*string{
		"StartExportFunctionArn": fns["StartExport"].FunctionArn(),
		"PollExportFunctionArn":  fns["PollExport"].FunctionArn(),
		"StoreDumpFunctionArn":   fns["StoreDump"].FunctionArn(),
		"VerifyFunctionArn":      fns["Verify"].FunctionArn(),
		"PruneFunctionArn":       fns["Prune"].FunctionArn(),
	})
	// The definition comes from a file, so CDK cannot see which functions it
	// calls: grant exactly those.
	for _, id := range []string{"StartExport", "PollExport", "StoreDump", "Verify", "Prune"} {
		fns[id].GrantInvoke(database)
	}

	run := stateMachine(stack, "BackupRun", statemachine.BackupRun, map[string]*string{
		"DiscoverFunctionArn":           fns["Discover"].FunctionArn(),
		"BackupDatabaseStateMachineArn": database.StateMachineArn(),
		"MaxConcurrency":                jsii.String(strconv.Itoa(cfg.Concurrency)),
	})
	fns["Discover"].GrantInvoke(run)
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
func credentialsSecret(stack awscdk.Stack, cfg Config) awssecretsmanager.ISecret {
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

func nonZero(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// staleBackupAlarms alarm when backups quietly stop: the store step emits a
// BackupSucceeded metric per database (Embedded Metric Format), and a
// database with none for staleAfterHours breaches, missing data included
// (no data is exactly what silence looks like). Databases named in the
// configuration get one alarm each; with "*" one alarm watches the total.
func staleBackupAlarms(stack awscdk.Stack, cfg Config, topic awssns.ITopic) {
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
	if cfg.Databases == "*" {
		alarm("NoRecentBackupAlarm", "any database", map[string]*string{})
		return
	}
	for i, db := range strings.Split(cfg.Databases, ",") {
		alarm(fmt.Sprintf("NoRecentBackup%dAlarm", i), "database "+db, map[string]*string{config.MetricDimensionDatabase: jsii.String(db)})
	}
}
