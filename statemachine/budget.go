package statemachine

import "time"

// Limits of a Standard workflow execution that the definitions are held to.
const (
	// HistoryLimit is Step Functions' cap on an execution's history,
	// redrives included; an execution that reaches it fails and cannot be
	// redriven.
	HistoryLimit = 25000
	// HistoryBudget is what a configuration may use in the worst case of
	// one attempt, leaving room for redrives.
	HistoryBudget = 20000
	// PayloadLimit is the largest state input, output or task payload.
	PayloadLimit = 256 * 1024
)

// History events per state, as Step Functions records them (the
// simulation's tests hold the model to the events of simulated runs).
const (
	EventsExecution    = 2 // ExecutionStarted, ExecutionSucceeded or ExecutionFailed
	EventsRedrive      = 1 // ExecutionRedriven
	EventsLambdaTask   = 5 // TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded or TaskFailed, TaskStateExited
	EventsSyncTask     = 6 // ... and TaskSubmitted: a child execution started and awaited
	EventsRetry        = 3 // TaskFailed, then TaskScheduled and TaskStarted again
	EventsChoice       = 2 // ChoiceStateEntered, ChoiceStateExited
	EventsWait         = 2
	EventsPass         = 2
	EventsSucceed      = 2
	EventsMap          = 4 // MapStateEntered, MapStateStarted, MapStateSucceeded, MapStateExited
	EventsMapIteration = 2 // MapIterationStarted, MapIterationSucceeded
)

// Allowances the worst cases assume beyond the configured loops.
const (
	// MaxRetriesPerTask is the most failed attempts one Task invocation
	// can retry (the definitions' retriers: 6 + 5 + 2).
	MaxRetriesPerTask = 13
	// RetriedTasks is how many Task invocations of one attempt are assumed
	// to use up their retries.
	RetriedTasks = 10
	// StoreRounds is how many invocations the resumable store step may
	// take for one dump (a 10 GB dump takes 1 to 5).
	StoreRounds = 50
	// ThrottleRounds is how many waits on rate limits an execution may
	// make: step.MaxThrottle / step.MinThrottleWait.
	ThrottleRounds = 60
	// CheckRounds is how many times a check step waits for children
	// redriven in one redrive (30 s doubling to 5 min, for up to a child's
	// 4 h).
	CheckRounds = 52
)

// DatabaseWorkload is what bounds the history of a BackupDatabase
// execution.
type DatabaseWorkload struct {
	PollInterval, PollIntervalMax, ExportTimeout time.Duration
	MaxRestarts                                  int
}

// Polls is the most polls of one export: waits starting at the poll
// interval, doubling up to the cap, until the export's deadline, plus the
// poll that finds the deadline passed.
func (w DatabaseWorkload) Polls() int {
	n, at, wait := 1, time.Duration(0), w.PollInterval
	if wait <= 0 {
		return 0
	}
	for at+wait <= w.ExportTimeout {
		at += wait
		n++
		wait = min(2*wait, max(w.PollIntervalMax, w.PollInterval))
	}
	return n
}

// WorstEvents is the most history events one attempt of a BackupDatabase
// execution can record: every export (the first and each restart) polled
// to its deadline, the store step checkpointing StoreRounds times, the
// allowance of retries and rate-limit waits.
func (w DatabaseWorkload) WorstEvents() int {
	pollRound := EventsWait + EventsLambdaTask + EventsChoice
	export := EventsLambdaTask + EventsChoice + EventsChoice + w.Polls()*pollRound
	exports := (w.MaxRestarts + 1) * (export + EventsLambdaTask)  // + the step that found it stopped
	fixed := EventsExecution + 3*EventsLambdaTask + EventsSucceed // check, verify, prune
	store := StoreRounds * (EventsLambdaTask + EventsChoice)
	retries := RetriedTasks * MaxRetriesPerTask * EventsRetry
	throttle := ThrottleRounds * (EventsWait + EventsLambdaTask + EventsChoice)
	return fixed + exports + store + retries + throttle
}

// checkEvents is the history of a check step in one attempt: its first
// call, and in a redrive the waits for the redriven children.
func checkEvents(redrives int) int {
	first := EventsLambdaTask + EventsChoice + EventsSucceed
	return first + redrives*(EventsRedrive+CheckRounds*(EventsWait+EventsLambdaTask+EventsChoice))
}

// startRetries is how often a Map iteration's child start is retried
// (StepFunctions.ExecutionLimitExceeded and the like).
const startRetries = 5

// childEvents is the history of one Map iteration that starts a child
// execution and waits for it, failing and recorded (the costlier way), with
// its start retried startRetries times.
func childEvents() int {
	return EventsMapIteration + EventsSyncTask + EventsPass + startRetries*EventsRetry
}

// WorstPageEvents is the most history events of a BackupPage execution of
// databases databases after redrives redrives.
func WorstPageEvents(databases, redrives int) int {
	list := EventsLambdaTask + EventsChoice + ThrottleRounds*(EventsWait+EventsLambdaTask+EventsChoice)
	return EventsExecution + list + EventsMap + databases*childEvents() + checkEvents(redrives)
}

// WorstRunEvents is the most history events of a BackupRun execution of
// pages pages after redrives redrives.
func WorstRunEvents(pages, redrives int) int {
	discover := EventsLambdaTask + EventsChoice + ThrottleRounds*(EventsWait+EventsLambdaTask+EventsChoice)
	return EventsExecution + discover + EventsMap + pages*childEvents() + checkEvents(redrives)
}
