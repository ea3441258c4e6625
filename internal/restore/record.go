package restore

import (
	"context"
	"errors"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
)

// Verification is Verify's verdict (its report and error) as a manifest
// records it; ok is false when Verify reached no verdict on the backup (a
// missing identity, an unreachable store), which must not be recorded.
func Verification(rep *Report, verr error, at time.Time) (v *backup.Verification, ok bool) {
	var failed *VerificationError
	if rep == nil || (verr != nil && !errors.As(verr, &failed)) {
		return nil, false
	}
	v = &backup.Verification{OK: verr == nil, VerifiedAt: at.UTC(), SchemaHash: rep.SchemaSHA256, Tables: map[string]int64{}}
	for _, t := range rep.Tables {
		v.Tables[t.Name] = t.Rows
	}
	if failed != nil {
		v.Problems = failed.Problems
	}
	return v, true
}

// Record writes Verify's verdict into the backup's manifest (the manifest
// only, replaced whole in one atomic write), so retention's "newest
// verified" guard and status see it. It reports whether there was a verdict
// to record.
func Record(ctx context.Context, src Source, rep *Report, verr error, at time.Time) (bool, error) {
	v, ok := Verification(rep, verr, at)
	if !ok {
		return false, nil
	}
	_, manifestKey := src.Keys()
	return true, backup.RecordVerification(ctx, src.Store, manifestKey, v)
}
