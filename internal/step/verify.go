package step

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/d1backup/d1backup/internal/backup"
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
	Status       string           `json:"status"`
	Reason       string           `json:"reason,omitempty"`
	Tables       map[string]int64 `json:"tables,omitempty"`
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
	if h.initErr != nil {
		return Result{}, h.initErr
	}
	if in.ManifestKey == "" {
		return Result{}, &backup.ConfigError{Msg: "verify step input has no manifest_key (the store step's output)"}
	}
	skip := func(reason string) (Result, error) {
		in.Verification = &VerifyResult{Status: "skipped", Reason: reason}
		return in, nil
	}
	switch {
	case h.verifyMax <= 0:
		return skip("verification disabled (" + "D1BACKUP_VERIFY_MAX_BYTES=0)")
	case in.SQLBytes > h.verifyMax:
		return skip(fmt.Sprintf("dump of %d bytes is over the verification limit of %d bytes", in.SQLBytes, h.verifyMax))
	case in.Encrypted:
		return skip("encrypted: the workflow holds only recipients, no identity; verify with d1backup verify --identity")
	}
	rep, err := restore.Verify(ctx, restore.Source{Store: h.store, Key: in.ManifestKey}, restore.Options{TempDir: os.TempDir()})
	var failed *restore.VerificationError
	if err != nil && !errors.As(err, &failed) {
		return Result{}, backup.Classified(err)
	}
	v := &backup.Verification{OK: err == nil, VerifiedAt: h.now().UTC(), SchemaHash: rep.SchemaSHA256, Tables: map[string]int64{}}
	for _, t := range rep.Tables {
		v.Tables[t.Name] = t.Rows
	}
	if failed != nil {
		v.Problems = failed.Problems
	}
	if uerr := backup.RecordVerification(ctx, h.store, in.ManifestKey, v); uerr != nil {
		return Result{}, backup.Classified(uerr)
	}
	if failed != nil {
		return Result{}, failed
	}
	in.Verification = &VerifyResult{Status: "verified", Tables: v.Tables, SchemaSHA256: v.SchemaHash, SplitRows: rep.SplitRows}
	return in, nil
}
