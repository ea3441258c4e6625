package step

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/executions"
	"github.com/d1backup/d1backup/internal/restore"
)

// Machines: the state machines whose Task states call the steps. A run
// starts a page execution per page of databases, a page a database
// execution per database.
const (
	MachineRun      = "BackupRun"
	MachinePage     = "BackupPage"
	MachineDatabase = "BackupDatabase"
)

// Machines lists the state machines, the run first.
var Machines = []string{MachineRun, MachinePage, MachineDatabase}

// Def is one workflow step: a Lambda function and the Task state that
// invokes it. The registry below is the one place a step is declared:
// functions/<Dir>/main.go runs it, `d1backup step <Dir>` (the local
// simulation) runs it, the stack deploys it (function, memory, timeout,
// the ${<State>FunctionArn} substitution, invoke and secret grants), and the
// statemachine tests hold the definitions to it.
type Def struct {
	// State is the Task state's name in its state machines' definitions
	// and the function's construct id in the stack; the definitions name
	// the function ${<State>FunctionArn}.
	State string
	// Machines are the state machines whose definitions hold the Task.
	Machines    []string
	Description string
	// Timeout is the Lambda timeout. The Task state's TimeoutSeconds is
	// TaskTimeout: longer, so that a slow cold start (secrets, clients)
	// ends in the function's own timeout error, not an unretried
	// States.Timeout.
	Timeout time.Duration
	// MemoryMiB sizes the function for a configuration.
	MemoryMiB func(c config.Config) int
	// TmpMiB is its ephemeral storage (/tmp); 0 leaves Lambda's 512 MiB.
	TmpMiB func(c config.Config) int
	// Options say what the step loads (a store, a memory bound).
	Options Options
	// Handler picks the step's method from the handlers.
	Handler func(h *Handlers) any
}

// FunctionArnPlaceholder is the definition's name for the step's function.
func (d Def) FunctionArnPlaceholder() string { return d.State + "FunctionArn" }

// TaskTimeoutMargin is how much longer a Task state waits than its
// function's timeout.
const TaskTimeoutMargin = 30 * time.Second

// TaskTimeout is the Task state's TimeoutSeconds.
func (d Def) TaskTimeout() time.Duration { return d.Timeout + TaskTimeoutMargin }

// In reports whether the step's Task is in machine's definition.
func (d Def) In(machine string) bool { return slices.Contains(d.Machines, machine) }

// Dir is the function's folder under functions/ and under the build output,
// and its name for `d1backup step`: the State in kebab case
// (StoreDump: store-dump).
func (d Def) Dir() string {
	var b strings.Builder
	for i, r := range d.State {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('-')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func fixed(mib int) func(config.Config) int { return func(config.Config) int { return mib } }

// Registry lists the steps in the order they run.
var Registry = []Def{
	{State: "Discover", Machines: []string{MachineRun},
		Description: "d1backup: list the D1 databases to back up and split them into pages",
		Timeout:     60 * time.Second, MemoryMiB: fixed(256),
		Options: Options{Cloudflare: true},
		Handler: func(h *Handlers) any { return h.Discover }},
	{State: "ListPage", Machines: []string{MachinePage},
		Description: "d1backup: list a page of databases, leaving out those still being backed up",
		Timeout:     120 * time.Second, MemoryMiB: fixed(256),
		Options: Options{Cloudflare: true, StepFunctions: true},
		Handler: func(h *Handlers) any { return h.ListPage }},
	{State: "CheckChildren", Machines: []string{MachineRun, MachinePage},
		Description: "d1backup: count a run's or page's results; on redrive, redrive the failed children and wait for them",
		Timeout:     300 * time.Second, MemoryMiB: fixed(256),
		Options: Options{StepFunctions: true},
		Handler: func(h *Handlers) any { return h.CheckChildren }},
	{State: "CheckDestination", Machines: []string{MachineDatabase},
		Description: "d1backup: prove the bucket takes writes and deletes before D1 is asked to export",
		Timeout:     60 * time.Second, MemoryMiB: fixed(256),
		Options: Options{Store: true},
		Handler: func(h *Handlers) any { return h.CheckDestination }},
	{State: "StartExport", Machines: []string{MachineDatabase},
		Description: "d1backup: start a D1 export",
		Timeout:     60 * time.Second, MemoryMiB: fixed(256),
		Options: Options{Cloudflare: true, Seal: true},
		Handler: func(h *Handlers) any { return h.StartExport }},
	{State: "PollExport", Machines: []string{MachineDatabase},
		Description: "d1backup: poll a D1 export",
		Timeout:     60 * time.Second, MemoryMiB: fixed(256),
		Options: Options{Cloudflare: true, Seal: true},
		Handler: func(h *Handlers) any { return h.PollExport }},
	{State: "StoreDump", Machines: []string{MachineDatabase},
		Description: "d1backup: stream a D1 dump into R2 and write its manifest",
		Timeout:     900 * time.Second, MemoryMiB: storeMemory,
		Options: Options{Store: true, Seal: true, BoundMemory: true},
		Handler: func(h *Handlers) any { return h.StoreDump }},
	{State: "QueryDump", Machines: []string{MachineDatabase},
		Description: "d1backup: read a D1 database through the query API into R2 (what D1 cannot export)",
		Timeout:     900 * time.Second, MemoryMiB: storeMemory,
		// No memory bound: answer pages (up to 8 MiB of JSON) come on top
		// of the upload's parts, and storeMemory leaves room for both.
		Options: Options{Cloudflare: true, Store: true},
		Handler: func(h *Handlers) any { return h.QueryDump }},
	{State: "VerifyBackup", Machines: []string{MachineDatabase},
		Description: "d1backup: prove a stored backup restores into SQLite and record the result",
		Timeout:     900 * time.Second, MemoryMiB: fixed(2048), TmpMiB: verifyTmp,
		Options: Options{Store: true},
		Handler: func(h *Handlers) any { return h.Verify }},
	{State: "PruneBackups", Machines: []string{MachineDatabase},
		Description: "d1backup: apply the retention policy to a database's backups",
		Timeout:     300 * time.Second, MemoryMiB: fixed(256),
		Options: Options{Store: true},
		Handler: func(h *Handlers) any { return h.Prune }},
}

// storeMemory leaves room for the parts in flight (concurrency + 2 parts
// are buffered) plus the runtime; 1024 MB covers the default 16 MiB × 4
// with ample headroom, and more memory also means more CPU for compression.
func storeMemory(c config.Config) int {
	part := int(c.PartSize >> 20)
	return min(max(1024, part*(c.PartConcurrency+1)+256), 10240)
}

// verifyTmp holds the SQL and the scratch database built from it, with room
// to spare.
func verifyTmp(c config.Config) int {
	return int(min(max(512, 3*(c.VerifyMaxBytes>>20)+512), 10240))
}

// Lookup returns the step whose Dir() is dir.
func Lookup(dir string) (Def, bool) {
	for _, d := range Registry {
		if d.Dir() == dir {
			return d, true
		}
	}
	return Def{}, false
}

// Main is a Lambda function's main: it loads the step named dir and hands
// its handler to the Lambda runtime.
func Main(dir, version string) {
	d, ok := Lookup(dir)
	if !ok {
		panic(fmt.Sprintf("step: no step %q in the registry", dir))
	}
	opts := d.Options
	opts.Version = version
	lambda.Start(d.Handler(Load(context.Background(), opts)))
}

// ErrorClasses are the errorTypes the steps' functions return, and what the
// workflow does with each: the pipeline's classes plus the steps' own.
func ErrorClasses() []backup.Class {
	return append(backup.Classes(), ownClasses...)
}

// ownClasses are the step package's error classes (and those of the
// packages only steps use).
var ownClasses = []backup.Class{
	backup.NewClass[*restore.VerificationError](backup.Permanent),
	backup.NewClass[*SealedURLError](backup.Restart),
	backup.NewClass[*NoDatabasesError](backup.Permanent),
	backup.NewClass[*BackupsFailedError](backup.Permanent),
	backup.NewClass[*executions.StepFunctionsUnavailableError](backup.Retryable),
	backup.NewClass[*executions.StepFunctionsError](backup.Permanent),
}
