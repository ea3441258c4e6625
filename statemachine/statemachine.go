// Package statemachine holds the Step Functions definitions (Amazon States
// Language, JSONPath) of the backup workflow and embeds them, so the CDK stack,
// the tests and the local simulation all use the very same bytes.
//
// The definitions name their Lambda functions and the child state machine
// with ${Name} placeholders. CloudFormation fills them in at deploy time
// (DefinitionSubstitutions); local runs fill them in with Substitute.
package statemachine

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// BackupDatabase is the per-database workflow: check the bucket, start a D1
// export, poll it with Wait states until it completes, store the dump in
// R2, verify it, apply retention. Its input is a Target, its output a
// Summary with verification and retention (see internal/step).
//
// Placeholders: ${<State>FunctionArn} of its registered steps.
//
//go:embed backup-database.asl.json
var BackupDatabase string

// BackupPage backs up one page of a run's databases: list them, back up
// each as its own execution of BackupDatabase with bounded concurrency,
// check the results.
//
// Placeholders: ${<State>FunctionArn} of its registered steps and
// BackupDatabaseStateMachineArn.
//
//go:embed backup-page.asl.json
var BackupPage string

// BackupRun is the scheduled run: discover the databases, split them into
// pages, back up each page as its own execution of BackupPage, check the
// results.
//
// Placeholders: ${<State>FunctionArn} of its registered steps,
// BackupPageStateMachineArn and MaxConcurrency (a decimal integer; it sits
// inside a string in the definition so the file stays valid JSON, and is
// turned into a number there).
//
//go:embed backup-run.asl.json
var BackupRun string

// Definitions maps each state machine's name (as in internal/step's
// Machines) to its definition.
var Definitions = map[string]string{
	"BackupRun":      BackupRun,
	"BackupPage":     BackupPage,
	"BackupDatabase": BackupDatabase,
}

// placeholder matches ${Name} the way CloudFormation's DefinitionSubstitutions do.
var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// Placeholders returns the distinct placeholder names in def, sorted.
func Placeholders(def string) []string {
	var names []string
	for _, m := range placeholder.FindAllStringSubmatch(def, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Substitute replaces every ${Name} in def with vars[Name]. It fails when a
// placeholder has no value, so a definition never reaches a state machine
// with a dangling ${...}. Values are inserted verbatim, as CloudFormation
// does, so they may not contain quotes, backslashes or newlines (ARNs and
// integers do not). Extra vars are ignored.
func Substitute(def string, vars map[string]string) (string, error) {
	var missing []string
	for _, name := range Placeholders(def) {
		if _, ok := vars[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("statemachine: substitute: no value for %s", strings.Join(missing, ", "))
	}
	for name, v := range vars {
		if strings.ContainsAny(v, "\"\\\n'") {
			return "", fmt.Errorf("statemachine: substitute: value of %s may not contain quotes, backslashes or newlines: %q", name, v)
		}
	}
	return placeholder.ReplaceAllStringFunc(def, func(m string) string {
		return vars[placeholder.FindStringSubmatch(m)[1]]
	}), nil
}
