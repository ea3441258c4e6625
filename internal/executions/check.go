package executions

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// Kinds of children a check step looks after.
const (
	KindDatabase = "database" // a page's database backups (BackupDatabase executions)
	KindPage     = "page"     // a run's pages (BackupPage executions)
)

// Child is one child execution as the Map of its parent recorded it, and
// as the check step tracks it: {"ok":true} (plus counts for a page) when it
// succeeded, else who it is and how it failed.
type Child struct {
	OK bool `json:"ok,omitempty"`
	// A database child.
	DatabaseID   string `json:"database_id,omitempty"`
	DatabaseName string `json:"database_name,omitempty"`
	// A page child: its index (the run's state holds its range) and, once
	// it succeeded, its counts.
	Page         *Page `json:"page,omitempty"`
	Total        int   `json:"total,omitempty"`
	Succeeded    int   `json:"succeeded,omitempty"`
	SkippedCount int   `json:"skipped_count,omitempty"`
	// Error is the error the parent saw (States.TaskFailed when the child
	// failed; the child's own error is in its execution).
	Error string `json:"error,omitempty"`
	// Execution is the child's execution name when it is not the
	// canonical one (a fresh start after a redrive was refused).
	Execution string `json:"execution,omitempty"`
	// RedrivenAt is the parent's redrive attempt in which the check last
	// redrove (or found running) this child: each attempt redrives a
	// failed child at most once.
	RedrivenAt int `json:"redriven_at,omitempty"`
}

// Page is a range of a run's databases, by name: after < name <= through
// ("" leaves that end open).
type Page struct {
	Index   int    `json:"index"`
	After   string `json:"after"`
	Through string `json:"through"`
}

// Skipped is a database a page left out because another execution was
// still backing it up.
type Skipped struct {
	DatabaseID   string `json:"database_id"`
	DatabaseName string `json:"database_name"`
	Running      string `json:"running"`
}

// Failed reports whether the record is of a child that did not succeed.
func (c Child) Failed() bool { return !c.OK }

// Label names the child for people.
func (c Child) Label() string {
	switch {
	case c.DatabaseName != "":
		return c.DatabaseName
	case c.DatabaseID != "":
		return c.DatabaseID
	case c.Page != nil:
		return fmt.Sprintf("page %d", c.Page.Index)
	}
	return "unknown child"
}

// Name is the child's execution name in the run with key runKey.
func (c Child) Name(runKey string) string {
	switch {
	case c.Execution != "":
		return c.Execution
	case c.Page != nil:
		return PageChild(runKey, c.Page.Index)
	}
	return DatabaseChild(c.DatabaseID, runKey)
}

// CheckState is the check step's state: first the parent's state with its
// Map's results, then (Checked) the counts and the children still failed
// or running. The step's last output is the parent's output.
type CheckState struct {
	RunKey  string    `json:"run_key"`
	Page    *Page     `json:"page,omitempty"`
	Results []Child   `json:"results"`
	Skipped []Skipped `json:"skipped,omitempty"`
	// Pages are a run's pages (its failure records name a page by index);
	// MaxConcurrency is passed on to the pages a run's check starts.
	Pages          []Page `json:"pages,omitempty"`
	MaxConcurrency int    `json:"max_concurrency,omitempty"`

	// Checked is set once the Map's results were counted.
	Checked bool `json:"checked,omitempty"`
	// Total counts databases (of the page, or the run's known so far),
	// Succeeded those backed up, SkippedCount those skipped because
	// another execution was backing them up.
	Total        int `json:"total"`
	Succeeded    int `json:"succeeded"`
	SkippedCount int `json:"skipped_count"`
	// Round counts the waits for children redriven in a redrive;
	// WaitSeconds, when set, is the next one.
	Round       int `json:"round,omitempty"`
	WaitSeconds int `json:"wait_seconds,omitempty"`
}

// Databases is how many databases the check state covers: its Total once
// counted, else its Map's results and skipped databases (a page's).
func (s CheckState) Databases() int {
	if s.Checked {
		return s.Total
	}
	return len(s.Results) + len(s.Skipped)
}

// Check is what a run's or page's check step was asked the last time it
// ran: the children it looked after.
type Check struct {
	StateMachine string     `json:"state_machine"`
	Children     string     `json:"children"`
	State        CheckState `json:"state"`
}

// LastCheck reads, from the end of an execution's history, the input of
// the last task it scheduled, if that task was a check step (its payload
// names the kind of children); nil when the execution last ran another
// task (it failed before its children ran, or has none).
func LastCheck(ctx context.Context, api API, executionARN string) (*Check, error) {
	in := &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(executionARN), ReverseOrder: true, MaxResults: 100}
	for page := 0; page < 20; page++ {
		out, err := api.GetExecutionHistory(ctx, in)
		if err != nil {
			return nil, Classify("read the history of "+executionARN, err)
		}
		for _, ev := range out.Events {
			if ev.Type != types.HistoryEventTypeTaskScheduled || ev.TaskScheduledEventDetails == nil {
				continue
			}
			var params struct {
				Payload Check `json:"Payload"`
			}
			if err := json.Unmarshal([]byte(aws.ToString(ev.TaskScheduledEventDetails.Parameters)), &params); err != nil || params.Payload.Children == "" {
				return nil, nil
			}
			return &params.Payload, nil
		}
		if out.NextToken == nil {
			return nil, nil
		}
		in.NextToken = out.NextToken
	}
	return nil, nil
}
