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
	// MetricDimensionDatabase names the database, MetricDimensionDatabaseID
	// gives its UUID: a database the configuration lists is published with
	// the dimension it is listed by (the one its alarm watches). Every
	// metric is also published without dimensions, as the total over all
	// databases.
	MetricDimensionDatabase   = "Database"
	MetricDimensionDatabaseID = "DatabaseId"
)
