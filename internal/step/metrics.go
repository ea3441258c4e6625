package step

import (
	"encoding/json"
	"io"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
)

// writeMetrics writes one CloudWatch Embedded Metric Format line: Lambda
// ships stdout to CloudWatch Logs, which turns the line into metrics with no
// API call (and no PutMetricData permission).
func writeMetrics(w io.Writer, sum backup.Summary, exp backup.Export, now time.Time) error {
	blocked := 0.0
	if exp.CompletedAt != nil {
		blocked = exp.CompletedAt.Sub(exp.StartedAt).Seconds()
	}
	type metric struct {
		Name string `json:"Name"`
		Unit string `json:"Unit"`
	}
	line := map[string]any{
		"_aws": map[string]any{
			"Timestamp": now.UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  config.MetricNamespace,
				"Dimensions": [][]string{{config.MetricDimensionDatabase}, {}},
				"Metrics": []metric{
					{config.MetricBackupSucceeded, "Count"}, {config.MetricDumpBytes, "Bytes"}, {config.MetricStoredBytes, "Bytes"},
					{config.MetricDuration, "Seconds"}, {config.MetricBlocked, "Seconds"},
				},
			}},
		},
		config.MetricDimensionDatabase: sum.DatabaseName,
		"database_id":                  sum.DatabaseID,
		"key":                          sum.Key,
		config.MetricBackupSucceeded:   1,
		config.MetricDumpBytes:         sum.SQLBytes,
		config.MetricStoredBytes:       sum.StoredBytes,
		config.MetricDuration:          now.Sub(exp.StartedAt).Seconds(),
		config.MetricBlocked:           blocked,
	}
	return json.NewEncoder(w).Encode(line)
}
