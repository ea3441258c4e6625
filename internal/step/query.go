package step

import (
	"context"

	"github.com/d1backup/d1backup/internal/backup"
)

// QueryDump reads a database through the query API and stores its dump, in
// one invocation: the workflow's Choice sends the start or poll step's
// output here when its status is "query" (method query, or auto and D1
// refused to export). Its output is the store step's, plus the method, the
// consistency verdict and any warnings, which the later steps carry into
// the workflow's result. A read is not resumable across invocations: a
// failed one (a Retry) reads again from the start.
func (h *Handlers) QueryDump(ctx context.Context, in backup.Export) (backup.Summary, error) {
	if h.initErr != nil {
		return backup.Summary{}, h.initErr
	}
	sum, err := h.runner.Query(ctx, in)
	if err != nil {
		return backup.Summary{}, backup.Classified(err)
	}
	if h.metrics != nil {
		// A metric that fails to print must not fail a stored backup.
		_ = writeMetrics(h.metrics, sum, in, h.now())
	}
	return sum, nil
}
