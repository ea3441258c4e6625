package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/step"
)

// newStepCmd runs one workflow step the way its Lambda function would
// (same registry entry, same handler, same JSON (de)serialisation), reading
// the input from stdin. The local state machine simulation calls it for each
// Task state. On failure it prints {"errorType","errorMessage"} as the
// Lambda runtime reports it.
func newStepCmd(e env) *cobra.Command {
	var names []string
	for _, d := range step.Registry {
		names = append(names, d.Dir())
	}
	return &cobra.Command{
		Use:       "step <" + strings.Join(names, "|") + "> < input.json",
		Short:     "Run one workflow step as its Lambda function would (local simulation)",
		Hidden:    true,
		ValidArgs: names,
		Args:      exactArgs(1, "usage: d1backup step "+strings.Join(names, "|")+" < input.json"),
		RunE: func(cmd *cobra.Command, args []string) error {
			def, ok := step.Lookup(args[0])
			if !ok {
				return usageError{fmt.Sprintf("unknown step %q (one of %s)", args[0], strings.Join(names, ", "))}
			}
			opts := def.Options
			opts.Version, opts.Log = version(), e.stderr
			ctx := cmd.Context()
			handler := lambda.NewHandler(def.Handler(step.Load(ctx, opts)))
			in, err := io.ReadAll(e.stdin)
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
		},
	}
}

// errStepFailed makes run exit 1 without a second report: the step's error
// is already on stdout.
var errStepFailed = errors.New("step failed")
