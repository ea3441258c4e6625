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
	var h *step.Handlers
	load := func(withStore bool) *step.Handlers {
		return step.Load(ctx, step.Options{Store: withStore, Version: version(), Log: e.stderr})
	}
	var handler lambda.Handler
	switch args[0] {
	case "discover":
		h = load(false)
		handler = lambda.NewHandler(h.Discover)
	case "start-export":
		h = load(false)
		handler = lambda.NewHandler(h.StartExport)
	case "poll-export":
		h = load(false)
		handler = lambda.NewHandler(h.PollExport)
	case "store-dump":
		h = step.Load(ctx, step.Options{Store: true, BoundMemory: true, Version: version(), Log: e.stderr})
		handler = lambda.NewHandler(h.StoreDump)
	case "verify":
		h = load(true)
		handler = lambda.NewHandler(h.Verify)
	case "prune":
		h = load(true)
		handler = lambda.NewHandler(h.Prune)
	default:
		return usageError{fmt.Sprintf("unknown step %q", args[0])}
	}
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
