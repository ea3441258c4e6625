package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/executions"
)

// The deployed workflow's commands. They use the standard AWS credential
// chain (AWS_PROFILE, AWS_REGION, ...); AWS_ENDPOINT_URL_SFN points them
// elsewhere.

func sfnClient(ctx context.Context) (*sfn.Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: set AWS_REGION (or a profile with a region) to the region the stack is deployed in")
	}
	return sfn.NewFromConfig(cfg), nil
}

// stateMachine is the configured state machine ARN (--state-machine or
// D1BACKUP_STATE_MACHINE_ARN; the settings table checks its shape).
func stateMachine(cmd *cobra.Command, e env) (string, error) {
	cfg, err := loadConfig(cmd, e)
	if err != nil {
		return "", err
	}
	if cfg.StateMachineARN == "" {
		return "", usageError{fmt.Sprintf("no state machine: pass --state-machine or set %s to the BackupRunStateMachineArn output of cdk deploy", config.EnvStateMachineARN)}
	}
	return cfg.StateMachineARN, nil
}

func newRunCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [--wait]",
		Short: "Start the deployed scheduled run now",
		Args:  cobra.NoArgs,
	}
	wait := cmd.Flags().Bool("wait", false, "wait for the run to end; exit 1 if it failed")
	config.BindFlags(cmd.Flags(), config.SettingStateMachine)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runNow(cmd, e, *wait) }
	return cmd
}

func runNow(cmd *cobra.Command, e env, wait bool) error {
	ctx := cmd.Context()
	sm, err := stateMachine(cmd, e)
	if err != nil {
		return err
	}
	client, err := sfnClient(ctx)
	if err != nil {
		return err
	}
	out, err := client.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(sm),
		Name:            aws.String("manual-" + time.Now().UTC().Format("20060102T150405Z")),
		Input:           aws.String("{}"),
	})
	if err != nil {
		return fmt.Errorf("start execution: %w", err)
	}
	fmt.Fprintf(e.stdout, "started %s\n", aws.ToString(out.ExecutionArn))
	if !wait {
		return nil
	}
	for {
		d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: out.ExecutionArn})
		if err != nil {
			return fmt.Errorf("describe execution: %w", err)
		}
		if d.Status != types.ExecutionStatusRunning && d.Status != types.ExecutionStatusPendingRedrive {
			fmt.Fprintf(e.stdout, "%s\n", d.Status)
			if d.Status != types.ExecutionStatusSucceeded {
				return fmt.Errorf("run %s: %s: %s", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
}

func newExecutionsCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "executions [--limit N]",
		Short: "Recent executions of a deployed state machine, with failures and causes",
		Args:  cobra.NoArgs,
	}
	limit := cmd.Flags().Int("limit", 10, "how many recent executions")
	asJSON := cmd.Flags().Bool("json", false, "print JSON")
	config.BindFlags(cmd.Flags(), config.SettingStateMachine)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return listExecutions(cmd, e, *limit, *asJSON) }
	return cmd
}

func listExecutions(cmd *cobra.Command, e env, limit int, asJSON bool) error {
	ctx := cmd.Context()
	if limit < 1 || limit > 1000 {
		return usageError{"--limit must be from 1 to 1000"}
	}
	sm, err := stateMachine(cmd, e)
	if err != nil {
		return err
	}
	client, err := sfnClient(ctx)
	if err != nil {
		return err
	}
	list, err := client.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(sm), MaxResults: int32(limit)})
	if err != nil {
		return fmt.Errorf("list executions: %w", err)
	}
	type row struct {
		ARN     string     `json:"execution_arn"`
		Status  string     `json:"status"`
		Start   time.Time  `json:"start"`
		Stop    *time.Time `json:"stop,omitempty"`
		Error   string     `json:"error,omitempty"`
		Cause   string     `json:"cause,omitempty"`
		Redrive int32      `json:"redrive_count,omitempty"`
	}
	var rows []row
	for _, x := range list.Executions {
		r := row{ARN: aws.ToString(x.ExecutionArn), Status: string(x.Status), Start: aws.ToTime(x.StartDate), Stop: x.StopDate, Redrive: aws.ToInt32(x.RedriveCount)}
		if x.Status == types.ExecutionStatusFailed || x.Status == types.ExecutionStatusTimedOut || x.Status == types.ExecutionStatusAborted {
			d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: x.ExecutionArn})
			if err != nil {
				return fmt.Errorf("describe execution %s: %w", r.ARN, err)
			}
			r.Error, r.Cause = aws.ToString(d.Error), aws.ToString(d.Cause)
		}
		rows = append(rows, r)
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tSTARTED\tEXECUTION\tFAILURE")
	for _, r := range rows {
		failure := ""
		if r.Error != "" || r.Cause != "" {
			failure = r.Error + ": " + strings.Join(strings.Fields(r.Cause), " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Status, r.Start.UTC().Format("2006-01-02 15:04Z"), r.ARN, failure)
	}
	return tw.Flush()
}

func newRedriveCmd(e env) *cobra.Command {
	return &cobra.Command{
		Use:   "redrive <execution-arn>",
		Short: "Rerun a failed run or backup from the steps that failed",
		Long: `Redrive a failed execution of the deployed workflow. For a run (or a page of
one), the failed database backups are redriven first, each resuming from the
step where it failed (a fresh export when the saved one went stale), then the
run, whose check step waits for them; databases that were backed up are not
run again. For a single database backup, the step that failed runs again.`,
		Args: exactArgs(1, "missing argument: the ARN of the failed execution (see d1backup executions)"),
		RunE: func(cmd *cobra.Command, args []string) error { return redrive(cmd, e, args[0]) },
	}
}

func redrive(cmd *cobra.Command, e env, arn string) error {
	ctx := cmd.Context()
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":execution:") {
		return usageError{fmt.Sprintf("%q is not an execution ARN (see d1backup executions)", arn)}
	}
	client, err := sfnClient(ctx)
	if err != nil {
		return err
	}
	return executions.Redrive(ctx, client, arn, func(arn, what string) {
		fmt.Fprintf(e.stdout, "%s %s\n", arn, what)
	})
}
