package step

import (
	"errors"
	"time"

	"github.com/d1backup/d1backup/internal/d1"
)

// Invocation is the payload of a Task state whose step needs more than the
// state: the definition passes the state, the execution's context object
// ($$.Execution, for its redrive count and time) and static facts of the
// deployment (the state machine of the children it deals with).
type Invocation[S any] struct {
	State     S         `json:"state"`
	Execution Execution `json:"execution"`
	// StateMachine is the ARN of the state machine the step's children
	// run on (ListPage, CheckChildren).
	StateMachine string `json:"state_machine,omitempty"`
	// Children is the kind of children a check step looks after.
	Children string `json:"children,omitempty"`
	// MaxConcurrency is the configured number of databases backed up at
	// once (the run passes it on to its pages).
	MaxConcurrency int `json:"max_concurrency,omitempty"`
}

// Execution is the part of the Step Functions context object ($$.Execution)
// the steps use. RedriveTime is absent until the execution is redriven.
type Execution struct {
	ID           string     `json:"Id"`
	Name         string     `json:"Name"`
	RedriveCount int        `json:"RedriveCount"`
	RedriveTime  *time.Time `json:"RedriveTime,omitempty"`
}

// Stale reports whether a state made at t belongs to an earlier attempt of
// a redriven execution. Redrive reruns the failed step with the input it
// had then; a stale export (deadline passed, restarts used up, a URL that
// expired meanwhile) gets a fresh budget instead of failing again.
func (e Execution) Stale(t time.Time) bool {
	return e.RedriveCount > 0 && e.RedriveTime != nil && t.Before(*e.RedriveTime)
}

// Throttle is how a step that Cloudflare rate limited hands the wait to
// the workflow: rather than fail (a Retry gives up after minutes, while
// Cloudflare blocks the account for five), the step returns its input with
// RetryAfterSeconds set, and a Wait state sleeps that long before the same
// step runs again.
type Throttle struct {
	// RetryAfterSeconds sends the workflow to a Wait of this long before
	// the step runs again; absent when the step got through.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	// ThrottledSeconds is how long the execution has waited on rate limits
	// so far; past MaxThrottle the step fails with the RateLimitError.
	ThrottledSeconds int `json:"throttled_seconds,omitempty"`
}

// Bounds of the waits on rate limits. The D1 client itself waits out a
// Retry-After up to 30 s; a longer one (Cloudflare blocks an account that
// went over its budget for five minutes) comes here.
const (
	MinThrottleWait = 30 * time.Second
	MaxThrottleWait = 10 * time.Minute
	// MaxThrottle bounds the total wait on rate limits of one execution.
	MaxThrottle = 30 * time.Minute
)

// throttled returns t set to wait out err's Retry-After when err is a rate
// limit and the execution's wait budget allows; ok is false otherwise (the
// step then fails with err).
func (t Throttle) throttled(err error) (Throttle, bool) {
	var rl *d1.RateLimitError
	if !errors.As(err, &rl) {
		return t, false
	}
	wait := rl.RetryAfter
	if wait <= 0 {
		wait = 5 * time.Minute // Cloudflare's block, when it does not say
	}
	wait = min(max(wait, MinThrottleWait), MaxThrottleWait)
	secs := int(wait / time.Second)
	if time.Duration(t.ThrottledSeconds+secs)*time.Second > MaxThrottle {
		return t, false
	}
	return Throttle{RetryAfterSeconds: secs, ThrottledSeconds: t.ThrottledSeconds + secs}, true
}

// waitOr is a step's answer to err: when err is a rate limit and the
// execution's wait budget allows, the step's state st (whose Throttle is
// t) set to wait it out, which the workflow waits and runs the step again
// with; otherwise err, classified.
func waitOr[S any](h *Handlers, st *S, t *Throttle, err error) (S, error) {
	if next, ok := t.throttled(err); ok {
		*t = next
		if h.metrics != nil {
			// A metric that fails to print must not fail the step.
			_ = h.throttledMetric(time.Duration(next.RetryAfterSeconds) * time.Second)
		}
		return *st, nil
	}
	var zero S
	return zero, h.fail(err)
}

// done is t after the step got through: no wait pending.
func (t Throttle) done() Throttle { return Throttle{ThrottledSeconds: t.ThrottledSeconds} }
