package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/statemachine"
)

// ParseConfig reads the stack's configuration from CDK context through get
// (which returns nil for an unset key; values are strings from -c and
// strings, numbers or arrays from cdk.json). Every setting, its default and
// range come from the settings table in internal/config; this adds what a
// deployment needs on top: the required keys, an https endpoint, and an
// export budget that fits the workflow's timeout. The error lists every bad
// key, each naming the key, what it must be and what it got.
func ParseConfig(get func(key string) any) (config.Config, error) {
	c, err := config.FromContext(get)
	if err != nil {
		return config.Config{}, err
	}
	var errs []error
	fail := func(key, msg string) { errs = append(errs, fmt.Errorf("context %q: %s", key, msg)) }
	if c.AccountID == "" {
		fail("cloudflareAccountId", "is required: the Cloudflare account ID (32 hex digits, in the dashboard's URL)")
	}
	if c.R2Bucket == "" {
		fail("bucket", "is required: the R2 bucket the backups go to")
	}
	if c.R2Endpoint != "" {
		if u, err := url.Parse(c.R2Endpoint); err != nil || u.Scheme != "https" {
			fail("r2Endpoint", fmt.Sprintf("must be an https:// URL (or empty for the account's R2 endpoint), got %q", c.R2Endpoint))
		}
	}
	// Every export, the first and each restart, may run to its deadline; what
	// is left of the per-database workflow's own timeout must still hold the
	// store step (up to 15 minutes, plus retries).
	limit, err := workflowTimeout()
	if err != nil {
		return config.Config{}, err
	}
	if worst := time.Duration(c.MaxRestarts+1) * c.ExportTimeout; worst > limit-30*time.Minute {
		fail("exportTimeout", fmt.Sprintf("%s × (maxRestarts %d + 1) = %s exceeds the %s that the per-database workflow's %s timeout leaves after 30m for storing the dump; lower exportTimeout or maxRestarts",
			fmtDuration(c.ExportTimeout), c.MaxRestarts, fmtDuration(worst), fmtDuration(limit-30*time.Minute), fmtDuration(limit)))
	}
	if worst := (statemachine.DatabaseWorkload{
		PollInterval: c.PollInterval, PollIntervalMax: c.PollIntervalMax,
		ExportTimeout: c.ExportTimeout, MaxRestarts: c.MaxRestarts,
	}).WorstEvents(); worst > statemachine.HistoryBudget {
		fail("pollIntervalMaxSeconds", fmt.Sprintf("with pollIntervalSeconds %s, pollIntervalMaxSeconds %s, exportTimeout %s and maxRestarts %d a database backup may record %d history events, over the %d this deployment allows (Step Functions fails an execution at %d): raise the poll interval or its cap, or lower exportTimeout or maxRestarts",
			fmtDuration(c.PollInterval), fmtDuration(c.PollIntervalMax), fmtDuration(c.ExportTimeout), c.MaxRestarts, worst, statemachine.HistoryBudget, statemachine.HistoryLimit))
	}
	if need := APIRequests(c); need > c.APIRequestBudget {
		fail("concurrency", fmt.Sprintf("%d databases at once polling every %s may make %d Cloudflare API requests in 5 minutes, over apiRequestBudget %d (Cloudflare allows 1200 for the whole account and then blocks every call for 5 minutes): lower concurrency or raise pollIntervalSeconds",
			c.Concurrency, fmtDuration(c.PollInterval), need, c.APIRequestBudget))
	}
	if n := len(c.Databases); n > MaxListedDatabases {
		fail("databases", fmt.Sprintf("lists %d databases; each gets its own alarm, and a stack holds at most %d of them: use * with include/exclude patterns", n, MaxListedDatabases))
	}
	if err := errors.Join(errs...); err != nil {
		return config.Config{}, err
	}
	return c, nil
}

// MaxListedDatabases bounds the databases a configuration may list by name
// or UUID: each gets a freshness alarm (a CloudFormation stack holds at
// most 500 resources).
const MaxListedDatabases = 200

// ListingReserve is the Cloudflare API requests per 5 minutes kept for
// listing the account (each page of a run lists it again: an account of
// 50,000 databases takes 50 requests).
const ListingReserve = 50

// MinBackupGap is the least time between one database's last poll and the
// next database's start on the same slot (storing, verifying and pruning
// a tiny dump, and the state transitions between: an assumption, not a
// measurement).
const MinBackupGap = 2 * time.Second

// APIRequests is the most Cloudflare API requests the scheduled run may
// make in 5 minutes with c. Each of the concurrency slots either polls one
// export (at most once per poll interval) or works through tiny databases
// (two requests, start and a poll that finds it complete, per poll
// interval plus MinBackupGap); the listing reserve comes on top. Errors add
// the client's own retries; a rate limit is then waited out as Cloudflare's
// Retry-After says.
func APIRequests(c config.Config) int {
	per := func(d time.Duration) int { return int((5*time.Minute + d - 1) / d) }
	slot := max(per(c.PollInterval), 2*per(c.PollInterval+MinBackupGap))
	return c.Concurrency*slot + ListingReserve
}

// ContextKeys lists every context key ParseConfig reads.
func ContextKeys() []string {
	var keys []string
	for _, s := range config.Settings() {
		if s.Context != "" {
			keys = append(keys, s.Context)
		}
	}
	return keys
}

// workflowTimeout is the TimeoutSeconds of the per-database state machine,
// read from the definition so the two cannot drift.
func workflowTimeout() (time.Duration, error) {
	var def struct{ TimeoutSeconds int }
	if err := json.Unmarshal([]byte(statemachine.BackupDatabase), &def); err != nil || def.TimeoutSeconds == 0 {
		return 0, fmt.Errorf("infra: backup-database definition has no TimeoutSeconds (%v)", err)
	}
	return time.Duration(def.TimeoutSeconds) * time.Second, nil
}

// fmtDuration prints 1h or 3h30m rather than 1h0m0s or 3h30m0s.
func fmtDuration(d time.Duration) string {
	h, m := d/time.Hour, d%time.Hour/time.Minute
	switch {
	case d%time.Minute != 0:
		return d.String()
	case h > 0 && m > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case h > 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dm", m)
}
