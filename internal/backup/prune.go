package backup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/retention"
	"github.com/d1backup/d1backup/internal/store"
)

// PruneResult is what a prune decided (and, unless it was a dry run, did)
// for one database.
type PruneResult struct {
	DatabaseID string `json:"database_id"`
	Kept       int    `json:"kept"`
	Deleted    int    `json:"deleted"`
	DryRun     bool   `json:"dry_run"`
	// Warnings are backups kept because d1backup could not be sure of them
	// (a manifest that could not be read, a dump that does not match its
	// manifest), and objects that are not d1backup's.
	Warnings []string `json:"warnings,omitempty"`
	// Cleaned are what an interrupted store left behind and nobody came
	// back for within StaleAfter: checkpoints, multipart uploads in
	// progress (with a folder destination: their files, and the temporary
	// files of writes cut short). With DryRun, what would be cleaned.
	Cleaned   []string             `json:"cleaned,omitempty"`
	Decisions []retention.Decision `json:"-"`
}

// Prune applies a retention policy to the backups of one database, deleting
// only what it is sure of: keys of d1backup's own grammar (anything else
// under the database's folder is never touched), backups whose manifest
// was read and whose dump exists with the recorded size, dumps whose
// manifest is provably absent (unfinished backups, after a grace period)
// and manifests whose dump is provably gone. A backup whose manifest cannot
// be read (5xx, 403, timeout) or that does not match it is kept and
// reported. The plan is made before anything is deleted, so a dry run
// prints exactly what the real run does. A dump and its manifest go
// together, manifest first, so an interruption leaves at worst a dump
// without a manifest, an unfinished backup a later run removes.
func Prune(ctx context.Context, st store.Store, databaseID string, p retention.Policy, now time.Time, dryRun bool) (PruneResult, error) {
	res := PruneResult{DatabaseID: databaseID, DryRun: dryRun}
	inv, err := inventory(ctx, st, databaseID)
	if err != nil {
		return res, err
	}
	res.Warnings = inv.warnings
	res.Decisions = retention.Plan(inv.backups, p, now)
	garbage, err := stale(ctx, st, databaseID, inv.checkpoints, now)
	if err != nil {
		return res, err
	}
	for _, g := range garbage {
		res.Cleaned = append(res.Cleaned, g.what)
	}
	for _, d := range res.Decisions {
		if d.Keep {
			res.Kept++
		} else {
			res.Deleted++
		}
	}
	if dryRun {
		return res, nil
	}
	for _, d := range res.Decisions {
		if d.Keep {
			continue
		}
		for _, k := range d.Keys {
			if err := st.Delete(ctx, k); err != nil {
				return res, storeError("delete "+k, err)
			}
		}
	}
	for _, g := range garbage {
		if err := g.clean(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// StaleAfter is how long a checkpoint or an upload in progress may go
// untouched before retention takes it for abandoned. A store step saves its
// checkpoint at every stop and every few minutes while it runs, and a
// backup's whole execution is bounded by hours.
const StaleAfter = 24 * time.Hour

// leftover is something an interrupted store left behind.
type leftover struct {
	what  string
	clean func(ctx context.Context) error
}

// stale finds what interrupted stores of the database left and nobody came
// back for: checkpoints untouched for StaleAfter (their uploads are aborted
// with them), and uploads in progress of d1backup's dump keys begun before
// then that no fresh checkpoint holds.
func stale(ctx context.Context, st store.Store, databaseID string, checkpoints []store.Object, now time.Time) ([]leftover, error) {
	cutoff := now.Add(-StaleAfter)
	fresh := map[string]bool{} // dump keys a fresh checkpoint holds
	var out []leftover
	for _, cp := range checkpoints {
		dump := strings.TrimSuffix(cp.Key, CheckpointSuffix)
		if cp.Modified.After(cutoff) {
			fresh[dump] = true
			continue
		}
		key := cp.Key
		out = append(out, leftover{
			what: fmt.Sprintf("%s: a checkpoint untouched since %s", key, cp.Modified.UTC().Format(time.RFC3339)),
			clean: func(ctx context.Context) error {
				if err := st.Delete(ctx, key); err != nil {
					return storeError("delete the stale checkpoint "+key, err)
				}
				return nil
			},
		})
	}
	mp, ok := st.(store.Multipart)
	if !ok {
		return out, nil
	}
	ups, err := mp.ListUploads(ctx, DatabasePrefix(databaseID))
	if err != nil {
		return nil, storeError("list the uploads in progress of "+databaseID, err)
	}
	for _, u := range ups {
		k, ok := ParseKey(u.Key)
		if !ok || k.Manifest || k.Checkpoint || k.DatabaseID != databaseID || fresh[u.Key] || u.Initiated.After(cutoff) {
			continue // not a dump of ours, or not abandoned
		}
		u := u
		out = append(out, leftover{
			what: fmt.Sprintf("%s: an upload begun %s and never completed", u.Key, u.Initiated.UTC().Format(time.RFC3339)),
			clean: func(ctx context.Context) error {
				if err := mp.AbortUpload(ctx, u.Key, u.ID); err != nil {
					return storeError("abort the stale upload of "+u.Key, err)
				}
				return nil
			},
		})
	}
	return out, nil
}

// Backups lists the backups of one database for retention, each dump with
// its manifest, and says what it could not be sure of. Only keys in
// d1backup's grammar are considered.
func Backups(ctx context.Context, st store.Store, databaseID string) ([]retention.Backup, []string, error) {
	inv, err := inventory(ctx, st, databaseID)
	return inv.backups, inv.warnings, err
}

// held is what one listing of a database's folder holds.
type held struct {
	backups     []retention.Backup
	warnings    []string
	checkpoints []store.Object
}

func inventory(ctx context.Context, st store.Store, databaseID string) (held, error) {
	objs, err := st.List(ctx, DatabasePrefix(databaseID))
	if err != nil {
		return held{}, storeError("list backups of "+databaseID, err)
	}
	type entry struct {
		dump, manifest *store.Object
	}
	var (
		h      held
		byDump = map[string]*entry{}
	)
	for i := range objs {
		o := &objs[i]
		k, ok := ParseKey(o.Key)
		if !ok || k.DatabaseID != databaseID {
			h.warnings = append(h.warnings, fmt.Sprintf("%s is not a d1backup key: left alone", o.Key))
			continue
		}
		if k.Checkpoint {
			h.checkpoints = append(h.checkpoints, *o)
			continue
		}
		e := byDump[k.Dump]
		if e == nil {
			e = &entry{}
			byDump[k.Dump] = e
		}
		if k.Manifest {
			e.manifest = o
		} else {
			e.dump = o
		}
	}
	dumps := make([]string, 0, len(byDump))
	for d := range byDump {
		dumps = append(dumps, d)
	}
	sort.Strings(dumps)
	for _, dump := range dumps {
		e := byDump[dump]
		b, warn, err := judge(ctx, st, dump, e.dump, e.manifest)
		if err != nil {
			return held{}, err
		}
		if warn != "" {
			h.warnings = append(h.warnings, warn)
		}
		h.backups = append(h.backups, b)
	}
	return h, nil
}

// judge decides what one backup is: good, unfinished, orphaned or held.
func judge(ctx context.Context, st store.Store, dump string, dumpObj, manifestObj *store.Object) (retention.Backup, string, error) {
	manifestKey := dump + ManifestSuffix
	b := retention.Backup{ID: dump}
	if manifestObj == nil {
		// An unfinished backup only if its manifest is provably absent,
		// not merely missing from a listing.
		switch _, err := st.Stat(ctx, manifestKey); {
		case errors.Is(err, store.ErrNotFound):
		case err == nil:
			b.Keys, b.Time = []string{manifestKey, dump}, dumpObj.Modified
			b.Hold = "its manifest appeared while listing: kept until the next run"
			return b, "", nil
		default:
			if ctx.Err() != nil {
				return b, "", ctx.Err()
			}
			b.Keys, b.Time = []string{dump}, dumpObj.Modified
			b.Hold = fmt.Sprintf("cannot tell whether it has a manifest (%v): kept", err)
			return b, dump + ": " + b.Hold, nil
		}
		b.Keys, b.Time = []string{dump}, dumpObj.Modified
		return b, "", nil
	}
	b.Keys = []string{manifestKey}
	if dumpObj != nil {
		b.Keys = append(b.Keys, dump)
	}
	b.Time = manifestObj.Modified
	m, err := ReadManifest(ctx, st, manifestKey)
	var bad *BadManifestError
	switch {
	case errors.As(err, &bad):
		b.Hold = "its manifest is not a d1backup manifest (" + bad.Msg + "): kept for inspection"
		return b, manifestKey + ": " + b.Hold, nil
	case err != nil:
		if ctx.Err() != nil {
			return b, "", ctx.Err()
		}
		b.Hold = fmt.Sprintf("its manifest could not be read (%v): kept", err)
		return b, manifestKey + ": " + b.Hold, nil
	}
	b.Time = m.ExportCompletedAt
	if b.Time.IsZero() {
		b.Time = m.StoredAt
	}
	if dumpObj == nil {
		// A manifest counts only with its dump: make sure it is gone.
		switch _, err := st.Stat(ctx, dump); {
		case errors.Is(err, store.ErrNotFound):
			return b, "", nil // an orphan manifest: nothing to restore, not good
		case err == nil:
			b.Keys = append(b.Keys, dump)
			b.Hold = "its dump appeared while listing: kept until the next run"
			return b, "", nil
		default:
			if ctx.Err() != nil {
				return b, "", ctx.Err()
			}
			b.Hold = fmt.Sprintf("cannot tell whether its dump exists (%v): kept", err)
			return b, dump + ": " + b.Hold, nil
		}
	}
	if dumpObj.Size != m.StoredBytes {
		b.Hold = fmt.Sprintf("the dump is %d bytes, its manifest says %d: kept for inspection", dumpObj.Size, m.StoredBytes)
		return b, dump + ": " + b.Hold, nil
	}
	// A dump read while the database changed is kept by the rules like
	// any other, but it is not one state of the database: it never stands
	// as the good backup that lets older ones go.
	inconsistent := m.Query != nil && !m.Query.Consistent
	b.Good = (m.Verification == nil || m.Verification.OK) && !inconsistent
	b.Verified = m.Verified() && !inconsistent
	return b, "", nil
}
