package backup

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/retention"
	"github.com/d1backup/d1backup/internal/store"
)

// PruneResult is what a prune decided (and, unless it was a dry run, did)
// for one database.
type PruneResult struct {
	DatabaseID string               `json:"database_id"`
	Kept       int                  `json:"kept"`
	Deleted    int                  `json:"deleted"`
	DryRun     bool                 `json:"dry_run"`
	Decisions  []retention.Decision `json:"-"`
}

// Prune applies a retention policy to the backups of one database. A dump
// and its manifest go together; the manifest is deleted first, so an
// interruption leaves at worst a dump without a manifest, which counts as an
// unfinished backup and is pruned on a later run.
func Prune(ctx context.Context, st store.Store, databaseID string, p retention.Policy, now time.Time, dryRun bool) (PruneResult, error) {
	res := PruneResult{DatabaseID: databaseID, DryRun: dryRun}
	backups, err := Backups(ctx, st, databaseID)
	if err != nil {
		return res, err
	}
	res.Decisions = retention.Plan(backups, p, now)
	for _, d := range res.Decisions {
		if d.Keep {
			res.Kept++
			continue
		}
		res.Deleted++
		if dryRun {
			continue
		}
		for _, k := range d.Keys {
			if err := st.Delete(ctx, k); err != nil {
				return res, storeError("delete "+k, err)
			}
		}
	}
	return res, nil
}

// Backups lists the backups of one database for retention: each dump with
// its manifest, and dumps whose manifest is missing (unfinished backups).
func Backups(ctx context.Context, st store.Store, databaseID string) ([]retention.Backup, error) {
	objs, err := st.List(ctx, DatabasePrefix(databaseID))
	if err != nil {
		return nil, storeError("list backups of "+databaseID, err)
	}
	byDump := map[string]*retention.Backup{}
	var order []string
	get := func(dump string) *retention.Backup {
		b, ok := byDump[dump]
		if !ok {
			b = &retention.Backup{ID: dump}
			byDump[dump] = b
			order = append(order, dump)
		}
		return b
	}
	for _, o := range objs {
		dump := strings.TrimSuffix(o.Key, ManifestSuffix)
		b := get(dump)
		b.Keys = append(b.Keys, o.Key)
		if dump == o.Key {
			if b.Time.IsZero() {
				b.Time = o.Modified
			}
			continue
		}
		m, err := ReadManifest(ctx, st, o.Key)
		if err != nil {
			continue // unreadable manifest: the backup counts as failed
		}
		b.Good = true
		b.Verified = m.Verified()
		if m.Verification != nil && !m.Verification.OK {
			b.Good = false
		}
		b.Time = m.ExportCompletedAt
		if b.Time.IsZero() {
			b.Time = m.StoredAt
		}
	}
	out := make([]retention.Backup, 0, len(order))
	for _, d := range order {
		b := byDump[d]
		// Manifest first: see Prune.
		sort.Slice(b.Keys, func(i, j int) bool {
			return strings.HasSuffix(b.Keys[i], ManifestSuffix) && !strings.HasSuffix(b.Keys[j], ManifestSuffix)
		})
		out = append(out, *b)
	}
	return out, nil
}
