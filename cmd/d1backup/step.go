package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/d1backup/d1backup/internal/step"
)

// cmdStep runs one workflow step the way its Lambda function would (same
// handler, same JSON (de)serialisation), reading the input from stdin. The
// local state machine simulation calls it for each Task state. On failure it
// prints {"errorType","errorMessage"} as the Lambda runtime reports it.
func cmdStep(ctx context.Context, args []string, e env, stdin io.Reader) error {
	if len(args) != 1 || args[0] == "--help" || args[0] == "-h" {
		return usageError{"usage: d1backup step discover|start-export|poll-export|store-dump|verify|prune < input.json"}
	}
	def, ok := steps[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown step %q", args[0])}
	}
	opts := def.opts
	opts.Version, opts.Log = version(), e.stderr
	handler := lambda.NewHandler(def.handler(step.Load(ctx, opts)))
	in, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	out, err := handler.Invoke(ctx, in)
	if err != nil {
		b, _ := json.Marshal(map[string]string{"errorType": step.ErrorType(err), "errorMessage": err.Error()})
		fmt.Fprintln(e.stdout, string(b))
		return errStepFailed
	}
	_, err = fmt.Fprintln(e.stdout, string(out))
	return err
}

// errStepFailed makes run exit 1 without a second report: the step's error
// is already on stdout.
var errStepFailed = fmt.Errorf("step failed")

// steps are the workflow's Lambda steps, loaded as their functions/<name>
// composition roots load them.
var steps = map[string]struct {
	opts    step.Options
	handler func(*step.Handlers) any
}{
	"discover":     {step.Options{}, func(h *step.Handlers) any { return h.Discover }},
	"start-export": {step.Options{}, func(h *step.Handlers) any { return h.StartExport }},
	"poll-export":  {step.Options{}, func(h *step.Handlers) any { return h.PollExport }},
	"store-dump":   {step.Options{Store: true, BoundMemory: true}, func(h *step.Handlers) any { return h.StoreDump }},
	"verify":       {step.Options{Store: true}, func(h *step.Handlers) any { return h.Verify }},
	"prune":        {step.Options{Store: true}, func(h *step.Handlers) any { return h.Prune }},
}
