// Package executions knows the shape of the deployed workflow's executions
// in Step Functions: how a run names its page and database executions, how
// to find the children an execution is waiting on or failed with, and how to
// redrive a failed run together with the children it failed with. The
// workflow's check step and the CLI's redrive command share it.
package executions

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// Execution names are at most 80 characters of [A-Za-z0-9_-] (the set
// CloudWatch logging needs). A database's execution is named
// <database uuid>-<run key>, 36 + 1 + 38 characters, leaving five for the
// -r<N> suffix of a fresh start after a child could not be redriven.
const (
	maxName   = 80
	maxRunKey = 38
	uuidLen   = 36
)

var (
	nameChars = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	uuidRe    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// RunKey is the part of its children's names that identifies a run: its
// execution name when that is short and plain (EventBridge's UUIDs,
// `d1backup run`'s manual-<time>), else a prefix of it and a hash of the
// whole, so that names stay unique, valid and within 80 characters.
func RunKey(executionName string) string {
	if len(executionName) <= maxRunKey && nameChars.MatchString(executionName) {
		return executionName
	}
	sum := sha256.Sum256([]byte(executionName))
	var prefix strings.Builder
	for _, r := range executionName {
		if prefix.Len() >= maxRunKey-13 {
			break
		}
		if r < 128 && nameChars.MatchString(string(r)) {
			prefix.WriteRune(r)
		}
	}
	return strings.TrimRight(prefix.String(), "-_") + "-" + hex.EncodeToString(sum[:6])
}

// DatabaseChild names the execution that backs up one database in a run:
// deterministic, so that a retried StartExecution finds the execution it
// already started instead of starting a second backup of the database.
func DatabaseChild(databaseID, runKey string) string { return databaseID + "-" + runKey }

// PageChild names the execution of a run's page of databases.
func PageChild(runKey string, index int) string { return fmt.Sprintf("%s-p%d", runKey, index) }

// Fresh names a child started anew in a redrive (attempt n) because its
// first execution could not be redriven.
func Fresh(name string, attempt int) string {
	suffix := fmt.Sprintf("-r%d", attempt)
	if len(name)+len(suffix) > maxName {
		name = name[:maxName-len(suffix)]
	}
	return name + suffix
}

// ParseDatabaseChild splits a database execution's name into the database
// UUID and the run key; ok is false for names the workflow did not make
// (executions started by hand).
func ParseDatabaseChild(name string) (databaseID, runKey string, ok bool) {
	if len(name) < uuidLen+2 || name[uuidLen] != '-' || !uuidRe.MatchString(name[:uuidLen]) {
		return "", "", false
	}
	return name[:uuidLen], name[uuidLen+1:], true
}

// ARN is the ARN of the execution called name of a state machine.
func ARN(stateMachineARN, name string) (string, error) {
	parts := strings.Split(stateMachineARN, ":")
	if len(parts) != 7 || parts[0] != "arn" || parts[2] != "states" || parts[5] != "stateMachine" {
		return "", fmt.Errorf("executions: %q is not a state machine ARN", stateMachineARN)
	}
	parts[5] = "execution"
	return strings.Join(parts, ":") + ":" + name, nil
}

// StateMachineOf is the ARN of the state machine an execution belongs to.
func StateMachineOf(executionARN string) (string, error) {
	parts := strings.Split(executionARN, ":")
	if len(parts) != 8 || parts[0] != "arn" || parts[2] != "states" || parts[5] != "execution" {
		return "", fmt.Errorf("executions: %q is not an execution ARN", executionARN)
	}
	parts[5] = "stateMachine"
	return strings.Join(parts[:7], ":"), nil
}
