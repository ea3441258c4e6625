package executions

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/smithy-go"
)

// API is what the workflow needs of Step Functions (implemented by
// *sfn.Client).
type API interface {
	DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, opts ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
	RedriveExecution(ctx context.Context, in *sfn.RedriveExecutionInput, opts ...func(*sfn.Options)) (*sfn.RedriveExecutionOutput, error)
	StartExecution(ctx context.Context, in *sfn.StartExecutionInput, opts ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
	ListExecutions(ctx context.Context, in *sfn.ListExecutionsInput, opts ...func(*sfn.Options)) (*sfn.ListExecutionsOutput, error)
	GetExecutionHistory(ctx context.Context, in *sfn.GetExecutionHistoryInput, opts ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error)
}

var _ API = (*sfn.Client)(nil)

// StepFunctionsUnavailableError: a Step Functions call failed in a way a
// retry may fix (throttling, 5xx, network).
type StepFunctionsUnavailableError struct {
	Op  string
	Err error
}

func (e *StepFunctionsUnavailableError) Error() string {
	return fmt.Sprintf("executions: %s: Step Functions unavailable: %v; retry later", e.Op, e.Err)
}
func (e *StepFunctionsUnavailableError) Unwrap() error { return e.Err }

// StepFunctionsError: Step Functions refused a call in a way a retry will
// not fix (permissions, a malformed ARN, an execution that does not exist).
type StepFunctionsError struct {
	Op  string
	Err error
}

func (e *StepFunctionsError) Error() string {
	return fmt.Sprintf("executions: %s: Step Functions refused: %v", e.Op, e.Err)
}
func (e *StepFunctionsError) Unwrap() error { return e.Err }

// Classify wraps a Step Functions error in its class: StepFunctionsUnavailableError
// when a retry may help, else StepFunctionsError.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var (
		ae  smithy.APIError
		ne  net.Error
		ret interface{ RetryableError() bool }
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return &StepFunctionsUnavailableError{Op: op, Err: err}
	case errors.As(err, &ae) && (ae.ErrorFault() == smithy.FaultServer || retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool()):
		return &StepFunctionsUnavailableError{Op: op, Err: err}
	case errors.As(err, &ret) && ret.RetryableError():
		return &StepFunctionsUnavailableError{Op: op, Err: err}
	case errors.As(err, &ae):
		return &StepFunctionsError{Op: op, Err: err}
	}
	// Anything else (a connection refused before any answer, a response the
	// SDK could not read) is the transport: worth a retry.
	return &StepFunctionsUnavailableError{Op: op, Err: err}
}
