package executions

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// NotRedrivableError: the execution did not fail (it runs, or succeeded),
// so there is nothing to redrive.
type NotRedrivableError struct {
	ARN    string
	Status string
}

func (e *NotRedrivableError) Error() string {
	return fmt.Sprintf("executions: %s is %s: only a failed, timed out or aborted execution can be redriven", e.ARN, e.Status)
}

// failedStatus reports whether an execution in status s can be redriven.
func failedStatus(s types.ExecutionStatus) bool {
	return s == types.ExecutionStatusFailed || s == types.ExecutionStatusTimedOut || s == types.ExecutionStatusAborted
}

// Redrive redrives a failed execution of the workflow, and first, depth
// first, the failed children its check step last reported: a run's pages,
// a page's database backups. Each resumes from the state where it failed;
// children that succeeded are not run again. The parent's check step, once
// redriven, waits for the children. report is told of every execution
// redriven, and of failed children left to the parent (never started, or
// refused by Step Functions), which the redriven parent starts anew.
func Redrive(ctx context.Context, api API, arn string, report func(arn, what string)) error {
	d, err := api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		return Classify("describe "+arn, err)
	}
	if !failedStatus(d.Status) {
		return &NotRedrivableError{ARN: arn, Status: string(d.Status)}
	}
	if err := redriveChildren(ctx, api, arn, report); err != nil {
		return err
	}
	if _, err := api.RedriveExecution(ctx, &sfn.RedriveExecutionInput{ExecutionArn: aws.String(arn)}); err != nil {
		return Classify("redrive "+arn, err)
	}
	report(arn, "redriven: it resumes from the state where it failed")
	return nil
}

func redriveChildren(ctx context.Context, api API, arn string, report func(arn, what string)) error {
	check, err := LastCheck(ctx, api, arn)
	if err != nil || check == nil {
		return err
	}
	for _, child := range check.State.Results {
		if !child.Failed() {
			continue
		}
		carn, err := ARN(check.StateMachine, child.Name(check.State.RunKey))
		if err != nil {
			return err
		}
		d, err := api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(carn)})
		var missing *types.ExecutionDoesNotExist
		switch {
		case errors.As(err, &missing):
			report(carn, "never started: the redriven parent starts it")
			continue
		case err != nil:
			return Classify("describe "+carn, err)
		case !failedStatus(d.Status):
			report(carn, "is "+string(d.Status)+": the redriven parent waits for it")
			continue
		}
		err = Redrive(ctx, api, carn, report)
		var refused *types.ExecutionNotRedrivable
		if errors.As(err, &refused) {
			report(carn, "cannot be redriven ("+refused.ErrorMessage()+"): the redriven parent starts it anew")
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}
