// Package backup is the backup pipeline: start a D1 export, poll it, and
// stream the dump into a store with its manifest. Its step functions and
// their input/output types are the contract of the Step Functions workflow;
// the CLI runs the same steps in one process.
package backup
