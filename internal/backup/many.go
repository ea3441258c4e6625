package backup

import (
	"context"
	"time"
)

// Outcome is what became of one database of a run over several.
type Outcome struct {
	Target  Target
	Summary Summary
	// Err is the classified error (see Classified) when the backup failed.
	Err     error
	Elapsed time.Duration
}

// RunMany backs up targets, at most concurrency at once, each through run
// (a Runner's Run; callers give each database its own Runner when they want
// its progress apart). One failure does not stop the others. Outcomes come
// in the order of targets; once ctx ends, targets not yet started fail with
// its error.
func RunMany(ctx context.Context, targets []Target, concurrency int, run func(context.Context, Target) (Summary, error)) []Outcome {
	out := make([]Outcome, len(targets))
	for i, t := range targets {
		out[i] = Outcome{Target: t}
	}
	started := make([]bool, len(targets))
	forEach(ctx, len(targets), concurrency, func(i int) {
		started[i] = true
		begin := time.Now()
		sum, err := run(ctx, targets[i])
		out[i].Summary, out[i].Err, out[i].Elapsed = sum, Classified(err), time.Since(begin)
	})
	for i := range out {
		if !started[i] {
			out[i].Err = ctx.Err()
		}
	}
	return out
}
