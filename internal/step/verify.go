package step

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/restore"
)

// Result is the per-database workflow's output as it grows through the
// last steps: the stored backup's summary, then its verification, then what
// retention did.
type Result struct {
	backup.Summary
	Verification *VerifyResult       `json:"verification,omitempty"`
	Retention    *backup.PruneResult `json:"retention,omitempty"`
}

// VerifyResult says whether and how the workflow verified a backup.
type VerifyResult struct {
	// Status is "verified" or "skipped".
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Tables holds the row counts of up to MaxOutputTables tables.
	Tables       map[string]int64 `json:"tables,omitempty"`
	TableCount   int              `json:"table_count,omitempty"`
	SchemaSHA256 string           `json:"schema_sha256,omitempty"`
	// SplitRows counts rows over D1's 100 KB statement limit, which a
	// restore into D1 splits.
	SplitRows int64 `json:"split_rows,omitempty"`
}

// Verify proves a stored backup restores (hashes, load into a scratch
// SQLite, integrity and foreign key checks) and records the row counts and
// schema hash in its manifest. A backup that fails verification fails the
// step with a VerificationError. Backups larger than the configured limit,
// and encrypted ones (the workflow holds no identity, by design), are
// skipped with the reason in the output.
func (h *Handlers) Verify(ctx context.Context, in Result) (Result, error) {
	d, err := h.storeDeps(ctx)
	if err != nil {
		return Result{}, err
	}
	if in.ManifestKey == "" {
		return Result{}, &backup.ConfigError{Msg: "verify step input has no manifest_key (the store step's output)"}
	}
	verifyMax := d.cfg.VerifyMaxBytes
	skip := func(reason string) (Result, error) {
		in.Verification = &VerifyResult{Status: "skipped", Reason: reason}
		h.succeeded(d, in.Summary)
		return in, nil
	}
	switch {
	case verifyMax <= 0:
		return skip("verification disabled (" + config.EnvVerifyMaxBytes + "=0)")
	case in.SQLBytes > verifyMax:
		return skip(fmt.Sprintf("dump of %d bytes is over the verification limit of %d bytes", in.SQLBytes, verifyMax))
	case in.Encrypted:
		return skip("encrypted: the workflow holds only recipients, no identity; verify with d1backup verify --identity")
	}
	rep, err := restore.Verify(ctx, restore.Source{Store: d.store, Key: in.ManifestKey}, restore.Options{TempDir: os.TempDir()})
	var failed *restore.VerificationError
	if err != nil && !errors.As(err, &failed) {
		return Result{}, h.fail(err)
	}
	v := &backup.Verification{OK: err == nil, VerifiedAt: h.now().UTC(), SchemaHash: rep.SchemaSHA256, Tables: map[string]int64{}}
	for _, t := range rep.Tables {
		v.Tables[t.Name] = t.Rows
	}
	if failed != nil {
		v.Problems = failed.Problems
	}
	if uerr := backup.RecordVerification(ctx, d.store, in.ManifestKey, v); uerr != nil {
		return Result{}, h.fail(uerr)
	}
	if failed != nil {
		return Result{}, failed
	}
	in.Verification = &VerifyResult{Status: "verified", SchemaSHA256: v.SchemaHash, TableCount: len(v.Tables), SplitRows: rep.SplitRows}
	if len(v.Tables) <= MaxOutputTables {
		in.Verification.Tables = v.Tables
	}
	h.succeeded(d, in.Summary)
	return in, nil
}

// MaxOutputTables bounds the row counts the verify step puts in its output
// (the manifest holds them all): a database with thousands of tables would
// otherwise push the execution's state past Step Functions' 256 KiB.
const MaxOutputTables = 100

// succeeded publishes the metric the freshness alarms watch; a metric that
// fails to print must not fail a verified backup.
func (h *Handlers) succeeded(d *deps, sum backup.Summary) {
	if h.metrics != nil {
		_ = h.succeededMetric(d, sum)
	}
}

// Prune applies the retention policy to the database of a backup just
// stored. With no policy configured it keeps everything.
func (h *Handlers) Prune(ctx context.Context, in Result) (Result, error) {
	d, err := h.storeDeps(ctx)
	if err != nil {
		return Result{}, err
	}
	if in.DatabaseID == "" {
		return Result{}, &backup.ConfigError{Msg: "prune step input has no database_id (the store step's output)"}
	}
	res, err := backup.Prune(ctx, d.store, in.DatabaseID, d.cfg.Retention, h.now(), false)
	if err != nil {
		return Result{}, h.fail(err)
	}
	in.Retention = &res
	return in, nil
}
