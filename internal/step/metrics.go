package step

import (
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
)

type metric struct {
	name, unit string
	value      float64
}

// storedMetrics publishes what the store step measured: sizes, duration
// and how long the export blocked the database.
func (h *Handlers) storedMetrics(d *deps, sum backup.Summary, exp backup.Export) error {
	now := h.now()
	blocked := 0.0
	if exp.CompletedAt != nil {
		blocked = exp.CompletedAt.Sub(exp.StartedAt).Seconds()
	}
	return writeMetrics(h.metrics, d.sel, sum, now, []metric{
		{config.MetricDumpBytes, "Bytes", float64(sum.SQLBytes)}, {config.MetricStoredBytes, "Bytes", float64(sum.StoredBytes)},
		{config.MetricDuration, "Seconds", now.Sub(exp.StartedAt).Seconds()}, {config.MetricBlocked, "Seconds", blocked},
	})
}

// succeededMetric publishes BackupSucceeded, which the freshness alarms
// watch: only once the backup is verified (or verification was skipped
// for a stated reason).
func (h *Handlers) succeededMetric(d *deps, sum backup.Summary) error {
	return writeMetrics(h.metrics, d.sel, sum, h.now(), []metric{{config.MetricBackupSucceeded, "Count", 1}})
}

// throttledMetric publishes that Cloudflare rate limited a step and the
// workflow waits: account totals only (the dashboard's throttles).
func (h *Handlers) throttledMetric(wait time.Duration) error {
	return writeMetrics(h.metrics, backup.Selection{}, backup.Summary{}, h.now(), []metric{
		{config.MetricRateLimited, "Count", 1}, {config.MetricRateLimitWait, "Seconds", wait.Seconds()},
	})
}

// writeMetrics writes one CloudWatch Embedded Metric Format line: Lambda
// ships stdout to CloudWatch Logs, which turns the line into metrics with no
// API call (and no PutMetricData permission). The values are published as
// totals over all databases and, for a database the configuration lists,
// per database with the dimension it is listed by (DatabaseId for a UUID,
// Database for a name), the dimension its freshness alarm watches. With
// databases "*" nothing is published per database: no alarm watches it,
// and custom metrics would cost per database (50,000 databases × 5).
func writeMetrics(w io.Writer, sel backup.Selection, sum backup.Summary, now time.Time, ms []metric) error {
	dims := [][]string{{}}
	for _, ref := range sel.Databases {
		switch {
		case ref == "*":
		case d1.IsUUID(ref) && strings.EqualFold(ref, sum.DatabaseID):
			dims = append(dims, []string{config.MetricDimensionDatabaseID})
		case ref == sum.DatabaseName:
			dims = append(dims, []string{config.MetricDimensionDatabase})
		}
	}
	type def struct {
		Name string `json:"Name"`
		Unit string `json:"Unit"`
	}
	defs := make([]def, len(ms))
	line := map[string]any{
		config.MetricDimensionDatabase:   sum.DatabaseName,
		config.MetricDimensionDatabaseID: sum.DatabaseID,
		"key":                            sum.Key,
	}
	for i, m := range ms {
		defs[i] = def{m.name, m.unit}
		line[m.name] = m.value
	}
	line["_aws"] = map[string]any{
		"Timestamp": now.UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace": config.MetricNamespace, "Dimensions": dims, "Metrics": defs,
		}},
	}
	return json.NewEncoder(w).Encode(line)
}
