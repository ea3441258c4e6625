package step

import (
	"encoding/json"
	"io"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
)

// MetricNamespace is the CloudWatch namespace of the backup metrics; the
// stack's alarms use the same names.
const MetricNamespace = "D1Backup"

// Metric names.
const (
	MetricBackupSucceeded = "BackupSucceeded"
	MetricDumpBytes       = "DumpBytes"
	MetricStoredBytes     = "StoredBytes"
	MetricDuration        = "DurationSeconds"
	MetricBlocked         = "BlockedSeconds"
)

// DimensionDatabase is the metric dimension naming the database.
const DimensionDatabase = "Database"

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
				"Namespace":  MetricNamespace,
				"Dimensions": [][]string{{DimensionDatabase}},
				"Metrics": []metric{
					{MetricBackupSucceeded, "Count"}, {MetricDumpBytes, "Bytes"}, {MetricStoredBytes, "Bytes"},
					{MetricDuration, "Seconds"}, {MetricBlocked, "Seconds"},
				},
			}},
		},
		DimensionDatabase:     sum.DatabaseName,
		"database_id":         sum.DatabaseID,
		"key":                 sum.Key,
		MetricBackupSucceeded: 1,
		MetricDumpBytes:       sum.SQLBytes,
		MetricStoredBytes:     sum.StoredBytes,
		MetricDuration:        now.Sub(exp.StartedAt).Seconds(),
		MetricBlocked:         blocked,
	}
	return json.NewEncoder(w).Encode(line)
}
