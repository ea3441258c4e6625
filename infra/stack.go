package main

import (
	"path/filepath"
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
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
// credentials secrets, the run, page and database state machines, the
// schedule, and alarms.
func NewBackupStack(scope constructs.Construct, id string, props *BackupStackProps) awscdk.Stack {
	stack := awscdk.NewStack(scope, &id, &props.StackProps)
	cfg := props.Config
	secrets := newSecrets(stack, cfg)

	fns := map[string]awslambda.Function{}
	for _, s := range step.Registry {
		fns[s.State] = function(stack, cfg, s, secrets)
	}

	// The definitions come from files, so CDK cannot see which functions
	// they call: the registry says, and each machine may invoke exactly those.
	// Children first: a parent's definition names its child machine.
	machines := map[string]awsstepfunctions.StateMachine{}
	children := map[string]string{step.MachineRun: step.MachinePage, step.MachinePage: step.MachineDatabase}
	for _, name := range []string{step.MachineDatabase, step.MachinePage, step.MachineRun} {
		subst := map[string]*string{}
		for _, s := range step.Registry {
			if s.In(name) {
				subst[s.FunctionArnPlaceholder()] = fns[s.State].FunctionArn()
			}
		}
		if child, ok := children[name]; ok {
			subst[child+"StateMachineArn"] = machines[child].StateMachineArn()
		}
		if name == step.MachineRun {
			subst["MaxConcurrency"] = jsii.String(strconv.Itoa(cfg.Concurrency))
		}
		machines[name] = stateMachine(stack, name, statemachine.Definitions[name], subst)
		for _, s := range step.Registry {
			if s.In(name) {
				fns[s.State].GrantInvoke(machines[name])
			}
		}
	}
	for _, parent := range []string{step.MachineRun, step.MachinePage} {
		grantSyncChild(stack, machines[parent], machines[children[parent]])
	}
	grantWorkflowAccess(stack, fns, machines)

	topic := alarms(stack, cfg, machines)
	dashboardURL := dashboard(stack, fns, machines)
	for name, v := range map[string]*string{
		"DashboardUrl":                  dashboardURL,
		"BackupRunStateMachineArn":      machines[step.MachineRun].StateMachineArn(),
		"BackupPageStateMachineArn":     machines[step.MachinePage].StateMachineArn(),
		"BackupDatabaseStateMachineArn": machines[step.MachineDatabase].StateMachineArn(),
		"CloudflareSecretArn":           secrets[step.SecretCloudflare].SecretArn(),
		"R2SecretArn":                   secrets[step.SecretR2].SecretArn(),
		"AlarmTopicArn":                 topic.TopicArn(),
	} {
		awscdk.NewCfnOutput(stack, jsii.String(name), &awscdk.CfnOutputProps{Value: v})
	}
	return stack
}

// function deploys one registered step. Its environment comes from the
// settings table (nothing secret) plus the ARNs of the secrets its Options
// say it needs, which are the only ones it may read.
func function(stack awscdk.Stack, cfg config.Config, s step.Def, secrets map[string]secret) awslambda.Function {
	env := map[string]*string{}
	for k, v := range config.LambdaEnv(cfg) {
		env[k] = jsii.String(v)
	}
	var arns []*string
	for _, name := range s.Options.Secrets() {
		arns = append(arns, secrets[name].SecretArn())
	}
	if len(arns) > 0 {
		env[config.EnvSecretARNs] = awscdk.Fn_Join(jsii.String(","), &arns)
	}
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
	for _, name := range s.Options.Secrets() {
		secrets[name].GrantRead(fn, nil)
	}
	if cfg.SecretsKMSKeyARN != "" && (s.Options.Cloudflare || s.Options.Store) {
		// An imported secret encrypted with a customer managed key: CDK
		// cannot grant on a key it did not create, so say it here, and
		// only through Secrets Manager.
		fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions:   jsii.Strings("kms:Decrypt"),
			Resources: jsii.Strings(cfg.SecretsKMSKeyARN),
			Conditions: &map[string]any{"StringEquals": map[string]any{
				"kms:ViaService": "secretsmanager." + *stack.Region() + ".amazonaws.com",
			}},
		}))
	}
	return fn
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

// grantSyncChild lets parent run child executions with
// startExecution.sync:2: start them, follow them (and stop them when the
// parent is stopped), and learn of their end through a rule Step Functions
// manages in the account.
func grantSyncChild(stack awscdk.Stack, parent, child awsstepfunctions.StateMachine) {
	child.GrantStartExecution(parent)
	child.GrantExecution(parent, jsii.String("states:DescribeExecution"), jsii.String("states:StopExecution"))
	parent.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings("events:PutTargets", "events:PutRule", "events:DescribeRule"),
		Resources: jsii.Strings(*stack.FormatArn(&awscdk.ArnComponents{
			Service:      jsii.String("events"),
			Resource:     jsii.String("rule"),
			ResourceName: jsii.String("StepFunctionsGetEventsForStepFunctionsExecutionRule"),
		})),
	}))
}

// grantWorkflowAccess gives the steps that read or redrive the workflow's
// executions what they need, on the machines whose executions they touch:
// ListPage lists the running database backups (and describes those it did
// not start); CheckChildren describes, redrives and reads the history of
// pages and database backups, and starts one anew when Step Functions
// refuses a redrive. These statements go into a policy of their own: the
// state machines name the functions, and a function depends on its role's
// default policy, which could then not name the state machines.
func grantWorkflowAccess(stack awscdk.Stack, fns map[string]awslambda.Function, machines map[string]awsstepfunctions.StateMachine) {
	executionsOf := func(name string) *string {
		return stack.FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("states"), Resource: jsii.String("execution"),
			ResourceName: jsii.String(*machines[name].StateMachineName() + ":*"),
			ArnFormat:    awscdk.ArnFormat_COLON_RESOURCE_NAME,
		})
	}
	db, page := step.MachineDatabase, step.MachinePage
	grants := map[string][]awsiam.PolicyStatement{
		"ListPage": {
			statement([]string{"states:ListExecutions"}, machines[db].StateMachineArn()),
			statement([]string{"states:DescribeExecution"}, executionsOf(db)),
		},
		"CheckChildren": {
			statement([]string{"states:StartExecution"}, machines[db].StateMachineArn(), machines[page].StateMachineArn()),
			statement([]string{"states:DescribeExecution", "states:RedriveExecution", "states:GetExecutionHistory"}, executionsOf(db), executionsOf(page)),
		},
	}
	for _, state := range []string{"ListPage", "CheckChildren"} {
		statements := grants[state]
		awsiam.NewPolicy(stack, jsii.String(state+"WorkflowAccess"), &awsiam.PolicyProps{
			Roles:      &[]awsiam.IRole{fns[state].Role()},
			Statements: &statements,
		})
	}
}

func statement(actions []string, resources ...*string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{Actions: jsii.Strings(actions...), Resources: &resources})
}
