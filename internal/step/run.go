package step

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/executions"
)

// A run splits its databases into pages, each its own execution, so that
// no execution's history or state grows with the account: a page holds at
// most PageDatabases databases and PageBytes of their JSON, which keeps a
// page's state (its databases, their results, those skipped) far below
// Step Functions' 256 KiB and its history near 10 events per database.
const (
	PageDatabases = 500
	PageBytes     = 48 << 10
	// maxDescribed bounds the running executions with names the workflow
	// did not make (started by hand) that a page describes to learn which
	// database they back up.
	maxDescribed = 100
)

// Target is a database a page backs up (every field present, so the
// definition's paths always resolve).
type Target struct {
	DatabaseID   string `json:"database_id"`
	DatabaseName string `json:"database_name"`
}

// RunState is the scheduled run's state: what Discover planned.
type RunState struct {
	RunKey         string            `json:"run_key"`
	Total          int               `json:"total"`
	Pages          []executions.Page `json:"pages"`
	MaxConcurrency int               `json:"max_concurrency"`
	Throttle
}

// NoDatabasesError: the configured selection matched no database. A run
// that backs up nothing is almost certainly a mistake (include/exclude
// matching nothing), so it fails; fix the settings and redrive it.
type NoDatabasesError struct{ Selection string }

func (e *NoDatabasesError) Error() string {
	return "step: no database matched the configured databases/include/exclude (" + e.Selection + "); nothing was backed up"
}

// Discover lists the databases the scheduled run backs up and splits them,
// in name order, into pages.
func (h *Handlers) Discover(ctx context.Context, in Invocation[RunState]) (RunState, error) {
	d, err := h.d1Deps(ctx)
	if err != nil {
		return RunState{}, err
	}
	if in.MaxConcurrency < 1 {
		// 0 would mean no bound at all to the pages' Maps.
		return RunState{}, &backup.ConfigError{Msg: "discover needs max_concurrency, the databases backed up at once (definition)"}
	}
	st := in.State
	ts, err := backup.Discover(ctx, d.api, d.sel)
	if err != nil {
		return waitOr(h, &st, &st.Throttle, err)
	}
	if len(ts) == 0 {
		return RunState{}, &NoDatabasesError{Selection: fmt.Sprintf("databases %q, include %q, exclude %q", d.sel.Databases, d.sel.Include, d.sel.Exclude)}
	}
	return RunState{
		RunKey: runKey(in.Execution, h.now()), Total: len(ts), Pages: paginate(ts),
		MaxConcurrency: in.MaxConcurrency, Throttle: st.done(),
	}, nil
}

func runKey(e Execution, now time.Time) string {
	switch {
	case e.Name != "":
		return executions.RunKey(e.Name)
	case e.ID != "":
		return executions.RunKey(e.ID)
	}
	return "run-" + now.UTC().Format("20060102T150405Z")
}

// paginate splits targets (sorted by name) into pages by name range.
func paginate(ts []backup.Target) []executions.Page {
	var pages []executions.Page
	after, n, size := "", 0, 0
	for i, t := range ts {
		b, _ := json.Marshal(Target{t.DatabaseID, t.DatabaseName})
		if n > 0 && (n == PageDatabases || size+len(b) > PageBytes) {
			pages = append(pages, executions.Page{Index: len(pages), After: after, Through: ts[i-1].DatabaseName})
			after, n, size = ts[i-1].DatabaseName, 0, 0
		}
		n, size = n+1, size+len(b)+1
	}
	// The last page is open above: a database created since Discover
	// sorts into a page, not out of every page.
	return append(pages, executions.Page{Index: len(pages), After: after})
}

// PageState is a page's state: its databases, and those left out because
// another execution was still backing them up.
type PageState struct {
	RunKey         string               `json:"run_key"`
	Page           executions.Page      `json:"page"`
	MaxConcurrency int                  `json:"max_concurrency"`
	Targets        []Target             `json:"targets"`
	Skipped        []executions.Skipped `json:"skipped"`
	Throttle
}

// ListPage lists the account again and keeps the databases in the page's
// name range (a database deleted since the run began is left out, one
// created since is included). A database whose backup is still running in
// another execution (an earlier run that is still going) is skipped and
// listed as such, so that two exports of one database never overlap.
func (h *Handlers) ListPage(ctx context.Context, in Invocation[PageState]) (PageState, error) {
	d, err := h.d1Deps(ctx)
	if err != nil {
		return PageState{}, err
	}
	if d.sfn == nil || in.StateMachine == "" {
		return PageState{}, &backup.ConfigError{Msg: "list-page needs Step Functions and the database state machine's ARN (step registry Options, definition)"}
	}
	st := in.State
	sel := d.sel
	sel.IgnoreMissing = true
	ts, err := backup.Discover(ctx, d.api, sel)
	if err != nil {
		return waitOr(h, &st, &st.Throttle, err)
	}
	running, err := runningBackups(ctx, d.sfn, in.StateMachine, st.RunKey)
	if err != nil {
		return PageState{}, h.fail(err)
	}
	st.Targets, st.Skipped = []Target{}, []executions.Skipped{}
	for _, t := range ts {
		if t.DatabaseName <= st.Page.After || (st.Page.Through != "" && t.DatabaseName > st.Page.Through) {
			continue
		}
		if exec, ok := running.of(t); ok {
			st.Skipped = append(st.Skipped, executions.Skipped{DatabaseID: t.DatabaseID, DatabaseName: t.DatabaseName, Running: exec})
			continue
		}
		st.Targets = append(st.Targets, Target{t.DatabaseID, t.DatabaseName})
	}
	st.Throttle = st.Throttle.done()
	return st, nil
}

// running maps databases to the executions backing them up.
type running struct{ byID, byName map[string]string }

func (r running) of(t backup.Target) (string, bool) {
	if e, ok := r.byID[t.DatabaseID]; ok {
		return e, true
	}
	e, ok := r.byName[t.DatabaseName]
	return e, ok
}

// runningBackups lists the running executions of the database state
// machine other than this run's. The workflow names them after the
// database; others (started by hand) are described to read their input.
func runningBackups(ctx context.Context, api executions.API, stateMachine, runKey string) (running, error) {
	r := running{byID: map[string]string{}, byName: map[string]string{}}
	in := &sfn.ListExecutionsInput{StateMachineArn: aws.String(stateMachine), StatusFilter: types.ExecutionStatusRunning, MaxResults: 1000}
	described := 0
	for {
		out, err := api.ListExecutions(ctx, in)
		if err != nil {
			return r, executions.Classify("list running backups", err)
		}
		for _, e := range out.Executions {
			name := aws.ToString(e.Name)
			if id, key, ok := executions.ParseDatabaseChild(name); ok {
				if key != runKey && !strings.HasPrefix(key, runKey+"-r") {
					r.byID[id] = name
				}
				continue
			}
			if described >= maxDescribed {
				continue
			}
			described++
			desc, err := api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: e.ExecutionArn})
			if err != nil {
				return r, executions.Classify("describe a running backup", err)
			}
			var t backup.Target
			if json.Unmarshal([]byte(aws.ToString(desc.Input)), &t) == nil {
				if t.DatabaseID != "" {
					r.byID[strings.ToLower(t.DatabaseID)] = name
				}
				if t.DatabaseName != "" {
					r.byName[t.DatabaseName] = name
				}
			}
		}
		if out.NextToken == nil {
			return r, nil
		}
		in.NextToken = out.NextToken
	}
}
