package config

// CloudWatch metrics the steps emit (Embedded Metric Format) and the stack's
// alarms and dashboard watch; one set of names so they cannot drift.
const (
	MetricNamespace       = "D1Backup"
	MetricBackupSucceeded = "BackupSucceeded"
	MetricDumpBytes       = "DumpBytes"
	MetricStoredBytes     = "StoredBytes"
	MetricDuration        = "DurationSeconds"
	MetricBlocked         = "BlockedSeconds"
	// MetricRateLimited counts the steps Cloudflare rate limited long
	// enough that the workflow waits (MetricRateLimitWait: how long).
	MetricRateLimited   = "RateLimited"
	MetricRateLimitWait = "RateLimitWaitSeconds"
	// MetricDimensionDatabase names the database, MetricDimensionDatabaseID
	// gives its UUID: a database the configuration lists is published with
	// the dimension it is listed by (the one its alarm watches). Every
	// metric is also published without dimensions, as the total over all
	// databases.
	MetricDimensionDatabase   = "Database"
	MetricDimensionDatabaseID = "DatabaseId"
)
