package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/executions"
)

// FirstFailures is how many failed databases a failure message names
// before it only counts the rest.
const FirstFailures = 10

// Waits between checks of children redriven in a redrive: doubling from
// the first to the last, which bounds the parent's history while a child
// (up to the database workflow's 4 h) runs.
const (
	firstCheckWait = 30 * time.Second
	maxCheckWait   = 5 * time.Minute
)

// BackupsFailedError: some of a run's (or page's) databases were not backed
// up. The execution stops at its check step; a redrive of it redrives each
// failed child, from the step where it failed, and waits for them.
type BackupsFailedError struct {
	Failed, Total int
	// Names are the first FirstFailures failures, each "name (reason)".
	Names []string
	// Where says what the execution is (a page of a run, a run).
	Where string
}

func (e *BackupsFailedError) Error() string {
	more := ""
	if n := e.Failed - len(e.Names); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("step: backup failed for %d of %d databases in %s: %s%s. Each database has its own execution of the backup-database state machine; redrive this execution (d1backup redrive <its ARN>) to rerun them from the step that failed",
		e.Failed, e.Total, e.Where, strings.Join(e.Names, ", "), more)
}

// CheckChildren looks after a run's pages or a page's databases once its
// Map has run them: it counts the results, and fails naming the children
// that failed. In a redriven execution it redrives each failed child (or,
// when Step Functions refuses, starts it afresh) and returns with
// wait_seconds set until they have all ended; the definition waits and
// calls it again. Each redrive attempt redrives a child at most once.
func (h *Handlers) CheckChildren(ctx context.Context, in Invocation[executions.CheckState]) (executions.CheckState, error) {
	d, err := h.deps(ctx)
	if err != nil {
		return executions.CheckState{}, err
	}
	if d.sfn == nil || in.StateMachine == "" || (in.Children != executions.KindDatabase && in.Children != executions.KindPage) {
		return executions.CheckState{}, &backup.ConfigError{Msg: "check-children needs Step Functions, the children's state machine ARN and their kind (step registry Options, definition)"}
	}
	st := in.State
	if !st.Checked {
		count(&st, in.Children)
	}
	c := checker{api: d.sfn, in: in, st: &st}
	var pending, failed []executions.Child
	var reasons []string
	for _, child := range st.Results {
		outcome, reason, err := c.check(ctx, &child)
		if err != nil {
			return executions.CheckState{}, h.fail(err)
		}
		switch outcome {
		case childPending:
			pending = append(pending, child)
		case childFailed:
			failed = append(failed, child)
			reasons = append(reasons, reason)
		}
	}
	st.Results = append(pending, failed...)
	if len(pending) > 0 {
		st.Round++
		st.WaitSeconds = int(min(firstCheckWait<<min(st.Round-1, 8), maxCheckWait) / time.Second)
		return st, nil
	}
	st.Round, st.WaitSeconds = 0, 0
	if len(failed) > 0 {
		return executions.CheckState{}, c.failure(ctx, failed, reasons)
	}
	return st, nil
}

// count turns the Map's results into counts, keeping only the children
// that did not succeed.
func count(st *executions.CheckState, kind string) {
	var rest []executions.Child
	st.Total, st.Succeeded, st.SkippedCount = 0, 0, 0
	if kind == executions.KindDatabase {
		st.Total, st.SkippedCount = len(st.Results)+len(st.Skipped), len(st.Skipped)
	}
	for _, r := range st.Results {
		switch {
		case r.Failed():
			rest = append(rest, r)
		case kind == executions.KindPage:
			st.Total += r.Total
			st.Succeeded += r.Succeeded
			st.SkippedCount += r.SkippedCount
		default:
			st.Succeeded++
		}
	}
	st.Results, st.Checked = rest, true
}

type outcome int

const (
	childDone outcome = iota
	childPending
	childFailed
)

type checker struct {
	api executions.API
	in  Invocation[executions.CheckState]
	st  *executions.CheckState
}

// check looks at one child that had not succeeded.
func (c checker) check(ctx context.Context, child *executions.Child) (outcome, string, error) {
	name := child.Name(c.st.RunKey)
	arn, err := executions.ARN(c.in.StateMachine, name)
	if err != nil {
		return 0, "", &backup.ConfigError{Msg: err.Error()}
	}
	attempt := c.in.Execution.RedriveCount
	redrive := attempt > 0 && child.RedrivenAt < attempt
	desc, err := c.api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	var missing *types.ExecutionDoesNotExist
	switch {
	case errors.As(err, &missing) && redrive:
		return c.start(ctx, child, name)
	case errors.As(err, &missing):
		return childFailed, fmt.Sprintf("%s (never started: %s)", child.Label(), child.Error), nil
	case err != nil:
		return 0, "", executions.Classify("describe "+arn, err)
	}
	switch desc.Status {
	case types.ExecutionStatusSucceeded:
		c.succeeded(child, aws.ToString(desc.Output))
		return childDone, "", nil
	case types.ExecutionStatusRunning, types.ExecutionStatusPendingRedrive:
		// Redriven by hand (d1backup redrive) or by this check: wait.
		child.RedrivenAt = max(child.RedrivenAt, attempt)
		return childPending, "", nil
	}
	if !redrive {
		return childFailed, fmt.Sprintf("%s (%s: %s)", child.Label(), aws.ToString(desc.Error), brief(aws.ToString(desc.Cause))), nil
	}
	_, err = c.api.RedriveExecution(ctx, &sfn.RedriveExecutionInput{ExecutionArn: aws.String(arn)})
	var refused *types.ExecutionNotRedrivable
	switch {
	case errors.As(err, &refused):
		// Too old, or its history is full: back it up anew.
		return c.start(ctx, child, executions.Fresh(name, attempt))
	case err != nil:
		return 0, "", executions.Classify("redrive "+arn, err)
	}
	child.RedrivenAt = attempt
	return childPending, "", nil
}

// start starts a child execution anew (it never started, or Step
// Functions refused to redrive it), with the input its parent's Map gives.
func (c checker) start(ctx context.Context, child *executions.Child, name string) (outcome, string, error) {
	input := map[string]any{"AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": c.in.Execution.ID}
	if child.Page != nil {
		page := *child.Page
		for _, p := range c.st.Pages {
			if p.Index == page.Index {
				page = p
			}
		}
		input["run_key"], input["page"], input["max_concurrency"] = c.st.RunKey, page, c.st.MaxConcurrency
	} else {
		input["database_id"], input["database_name"] = child.DatabaseID, child.DatabaseName
	}
	b, err := json.Marshal(input)
	if err != nil {
		return 0, "", &backup.InternalError{Err: err}
	}
	_, err = c.api.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(c.in.StateMachine), Name: aws.String(name), Input: aws.String(string(b))})
	var exists *types.ExecutionAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return 0, "", executions.Classify("start "+name, err)
	}
	canonical := *child
	canonical.Execution = ""
	child.Execution = ""
	if name != canonical.Name(c.st.RunKey) {
		child.Execution = name
	}
	child.RedrivenAt = c.in.Execution.RedriveCount
	return childPending, "", nil
}

// succeeded counts a child that succeeded after all.
func (c checker) succeeded(child *executions.Child, output string) {
	if child.Page == nil {
		c.st.Succeeded++
		return
	}
	var out executions.CheckState
	if json.Unmarshal([]byte(output), &out) == nil {
		c.st.Total += out.Total
		c.st.Succeeded += out.Succeeded
		c.st.SkippedCount += out.SkippedCount
	}
}

// failure builds the error naming the failed databases. A run's failed
// pages are looked into: their last check lists the databases that failed.
func (c checker) failure(ctx context.Context, failed []executions.Child, reasons []string) error {
	e := &BackupsFailedError{Total: c.st.Total}
	if c.in.Children == executions.KindDatabase {
		e.Where = fmt.Sprintf("page %d of run %s", pageIndex(c.st.Page), c.st.RunKey)
		e.Failed = len(failed)
		e.Names = reasons[:min(len(reasons), FirstFailures)]
		return e
	}
	e.Where = "run " + c.st.RunKey
	for i, page := range failed {
		arn, err := executions.ARN(c.in.StateMachine, page.Name(c.st.RunKey))
		if err != nil {
			return &backup.ConfigError{Msg: err.Error()}
		}
		check, err := executions.LastCheck(ctx, c.api, arn)
		if err != nil {
			return err
		}
		if check == nil {
			// The page failed before its databases ran (listing them).
			e.Failed++
			e.Names = appendFirst(e.Names, reasons[i])
			continue
		}
		e.Total += check.State.Databases()
		for _, db := range check.State.Results {
			if db.Failed() {
				e.Failed++
				e.Names = appendFirst(e.Names, db.Label())
			}
		}
	}
	return e
}

func appendFirst(names []string, name string) []string {
	if len(names) < FirstFailures {
		return append(names, name)
	}
	return names
}

func pageIndex(p *executions.Page) int {
	if p == nil {
		return 0
	}
	return p.Index
}

// brief shortens a child's failure cause for a list of failures.
func brief(cause string) string {
	cause = strings.Join(strings.Fields(cause), " ")
	if len(cause) > 160 {
		return cause[:157] + "..."
	}
	return cause
}
