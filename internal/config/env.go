// Package config is d1backup's one table of settings (settings.go) and what
// is derived from it: environment parsing for the CLI and the Lambda
// functions, CDK context parsing for the stack, CLI flags, and the Lambda
// environment the stack writes. To add a setting, add a Config field and a
// row to the table; every front door then reads, validates and documents it.
package config

// Environment variables. The first group follows wrangler's names.
const (
	EnvAccountID   = "CLOUDFLARE_ACCOUNT_ID"
	EnvAPIToken    = "CLOUDFLARE_API_TOKEN"
	EnvAPIBaseURL  = "CLOUDFLARE_API_BASE_URL"
	EnvR2AccessKey = "R2_ACCESS_KEY_ID"
	EnvR2Secret    = "R2_SECRET_ACCESS_KEY"
	EnvR2Bucket    = "R2_BUCKET"
	EnvR2Endpoint  = "R2_ENDPOINT"

	// EnvSecretARNs lists (comma-separated) the Secrets Manager secrets a
	// Lambda function reads its credentials from: each a JSON object whose
	// keys are the variables it stands in for (EnvAPIToken; EnvR2AccessKey
	// and EnvR2Secret; EnvSealKey). Each function is given only the secrets
	// it needs. Unset: credentials come from the variables themselves.
	EnvSecretARNs = "D1BACKUP_SECRET_ARNS"

	// EnvSealKey is the key (at least 32 characters) that seals signed dump
	// URLs passing through workflow state; the stack generates it.
	EnvSealKey = "D1BACKUP_SEAL_KEY"

	EnvPrefix       = "D1BACKUP_PREFIX"        // key prefix inside the bucket
	EnvCompression  = "D1BACKUP_COMPRESSION"   // gzip (default), zstd, none
	EnvPollInterval = "D1BACKUP_POLL_INTERVAL" // seconds between polls, default 5
	// EnvPollIntervalMax caps the workflow's poll interval, which doubles
	// from EnvPollInterval after each poll that finds the export running.
	EnvPollIntervalMax = "D1BACKUP_POLL_INTERVAL_MAX"
	EnvExportTimeout   = "D1BACKUP_EXPORT_TIMEOUT" // Go duration bounding an export, default 1h
	EnvMaxRestarts     = "D1BACKUP_MAX_RESTARTS"   // new exports after one stopped running, default 2
	EnvPartSize        = "D1BACKUP_PART_SIZE"      // multipart part size in bytes, default 16 MiB
	EnvConcurrency     = "D1BACKUP_CONCURRENCY"    // databases backed up at once, default 4

	EnvPartConcurrency = "D1BACKUP_PART_CONCURRENCY" // parts of one upload in flight, default 4
	EnvDatabases       = "D1BACKUP_DATABASES"        // comma-separated names/UUIDs, or * for all
	EnvInclude         = "D1BACKUP_INCLUDE"          // comma-separated glob patterns over names
	EnvExclude         = "D1BACKUP_EXCLUDE"          // comma-separated glob patterns over names

	// EnvAgeRecipients lists age X25519 public keys (comma-separated) the
	// dumps are encrypted to; none means no encryption.
	EnvAgeRecipients = "D1BACKUP_AGE_RECIPIENTS"

	// EnvVerifyMaxBytes: the workflow verifies backups whose SQL is at most
	// this many bytes (default 1 GiB); 0 disables verification.
	EnvVerifyMaxBytes = "D1BACKUP_VERIFY_MAX_BYTES"

	// Retention (GFS) per database; all zero keeps everything.
	EnvKeepLast    = "D1BACKUP_KEEP_LAST"
	EnvKeepDaily   = "D1BACKUP_KEEP_DAILY"
	EnvKeepWeekly  = "D1BACKUP_KEEP_WEEKLY"
	EnvKeepMonthly = "D1BACKUP_KEEP_MONTHLY"
	EnvTimeZone    = "D1BACKUP_TIMEZONE" // IANA zone days/weeks/months are counted in; default UTC

	// EnvStaleAfterHours: d1backup status calls a database stale after this
	// many hours without a good backup (the stack's alarm reads the same
	// setting from CDK context).
	EnvStaleAfterHours = "D1BACKUP_STALE_AFTER_HOURS"

	// EnvStateMachineARN names the deployed run state machine for the CLI's
	// run and executions commands.
	EnvStateMachineARN = "D1BACKUP_STATE_MACHINE_ARN"

	// EnvMethod: how databases are read, export, query or auto (default).
	EnvMethod = "D1BACKUP_METHOD"

	// EnvR2Jurisdiction is the R2 bucket's jurisdiction (default, eu,
	// fedramp); it selects the endpoint when R2_ENDPOINT is not set.
	EnvR2Jurisdiction = "R2_JURISDICTION"
	// EnvAllowCrossJurisdiction lets databases with a jurisdiction be backed
	// up into a bucket outside it.
	EnvAllowCrossJurisdiction = "D1BACKUP_ALLOW_CROSS_JURISDICTION"

	// Resumable store step: how long before its deadline it stops to save a
	// checkpoint, and how often it saves one while it runs.
	EnvStoreMargin        = "D1BACKUP_STORE_MARGIN"
	EnvCheckpointInterval = "D1BACKUP_CHECKPOINT_INTERVAL"
)

// DefaultAPIBaseURL is Cloudflare's API root.
const DefaultAPIBaseURL = "https://api.cloudflare.com/client/v4"

// DefaultLocalDir is where the CLI writes when no R2 bucket is configured.
const DefaultLocalDir = "d1-backups"
