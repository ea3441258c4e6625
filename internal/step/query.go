package step

import (
	"context"

	"github.com/d1backup/d1backup/internal/backup"
)

// QueryDump reads a database through D1's query API into a dump in D1's
// format and stores it as StoreDump stores an export: the workflow routes a
// database here when its start or poll step answers status "query" (method
// query, or D1 refused to export it). It blocks nobody. The output is the
// Summary, with the method and whether the dump is consistent.
func (h *Handlers) QueryDump(ctx context.Context, in backup.Export) (backup.Summary, error) {
	d, err := h.d1Deps(ctx)
	if err != nil {
		return backup.Summary{}, err
	}
	if d.store == nil {
		return backup.Summary{}, &backup.ConfigError{Msg: "this function has no store (step registry Options)"}
	}
	sum, err := d.runner.Query(ctx, in)
	if err != nil {
		return backup.Summary{}, h.fail(err)
	}
	if h.metrics != nil {
		// A metric that fails to print must not fail a stored backup.
		_ = h.storedMetrics(d, sum, in)
	}
	return sum, nil
}
