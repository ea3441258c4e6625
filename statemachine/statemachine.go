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

// BackupDatabase is the per-database workflow: start a D1 export, poll it
// with Wait states until it completes, store the dump in R2. Its input is a
// Target, its output a Summary (see internal/backup).
//
// Placeholders: StartExportFunctionArn, PollExportFunctionArn,
// StoreDumpFunctionArn.
//
//go:embed backup-database.asl.json
var BackupDatabase string

// BackupRun is the scheduled run: discover the databases, back up each as its
// own execution of BackupDatabase with bounded concurrency, and fail naming
// the databases that failed.
//
// Placeholders: DiscoverFunctionArn, BackupDatabaseStateMachineArn and
// MaxConcurrency (a decimal integer; it sits inside a string in the
// definition so the file stays valid JSON, and is turned into a number there).
//
//go:embed backup-run.asl.json
var BackupRun string

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
