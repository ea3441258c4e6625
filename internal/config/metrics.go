package config

// CloudWatch metrics the store step emits (Embedded Metric Format) and the
// stack's alarms watch; one set of names so the two cannot drift.
const (
	MetricNamespace       = "D1Backup"
	MetricBackupSucceeded = "BackupSucceeded"
	MetricDumpBytes       = "DumpBytes"
	MetricStoredBytes     = "StoredBytes"
	MetricDuration        = "DurationSeconds"
	MetricBlocked         = "BlockedSeconds"
	// MetricDimensionDatabase names the database; every metric is also
	// published without dimensions, as the total over all databases.
	MetricDimensionDatabase = "Database"
)
