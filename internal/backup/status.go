package backup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/d1backup/d1backup/internal/store"
)

// State is how well a database is backed up.
type State string

// States, best first.
const (
	// StateOK: the newest good backup is younger than the threshold and the
	// last attempt did not fail.
	StateOK State = "OK"
	// StateStale: the newest good backup is older than the threshold.
	StateStale State = "STALE"
	// StateFailed: the newest backup is not good (no manifest: the run
	// stopped between dump and manifest; a manifest that is not one; a
	// failed verification).
	StateFailed State = "FAILED"
	// StateNever: no good backup at all.
	StateNever State = "NEVER"
)

// MaxStatusReads bounds the manifests Status reads for one database while
// looking for its newest good backup.
const MaxStatusReads = 16

// StatusOptions tune Status.
type StatusOptions struct {
	// Now is the time ages are measured at.
	Now time.Time
	// StaleAfter is the age past which the newest good backup is stale.
	StaleAfter time.Duration
	// Concurrency bounds the databases whose manifests are read at once.
	Concurrency int
	// Expected lists the databases that should have backups (the account's
	// databases the selection picks). Nil means unknown: every database in
	// the destination is expected.
	Expected []Target
}

// DatabaseStatus is the backup state of one database.
type DatabaseStatus struct {
	DatabaseID   string
	DatabaseName string
	State        State
	// Reason says why the state is not OK.
	Reason string
	// Expected is false for a database that has backups but is not among
	// StatusOptions.Expected (deleted from the account, or left out by the
	// selection).
	Expected bool
	// Backups counts the backups with a manifest in the destination.
	Backups int
	// LastGood is the manifest of the newest good backup, nil when none was
	// found; LastGoodID is its ID.
	LastGood   *Manifest
	LastGoodID string
	// Skipped are the newer backups passed over to find LastGood, and why.
	Skipped []Skipped
}

// Status reports, for every database with backups in st and every expected
// one, its newest good backup and its state. It lists st once and reads, per
// database, manifests newest first until a good one (at most
// MaxStatusReads): the work per database is bounded whatever the number of
// backups. A manifest the store fails to return is an error (the state would
// be a guess); one that is not a manifest makes its backup not good.
func Status(ctx context.Context, st store.Store, opts StatusOptions) ([]DatabaseStatus, error) {
	shelves, err := Catalog(ctx, st, "")
	if err != nil {
		return nil, err
	}
	expected := map[string]Target{}
	for _, t := range opts.Expected {
		expected[t.DatabaseID] = t
	}
	out := make([]DatabaseStatus, len(shelves))
	errs := make([]error, len(shelves))
	forEach(ctx, len(shelves), opts.Concurrency, func(i int) {
		out[i], errs[i] = shelfStatus(ctx, st, shelves[i], opts)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i := range out {
		seen[out[i].DatabaseID] = true
		t, ok := expected[out[i].DatabaseID]
		out[i].Expected = ok || opts.Expected == nil
		if ok && t.DatabaseName != "" {
			out[i].DatabaseName = t.DatabaseName
		}
	}
	for _, t := range opts.Expected {
		if !seen[t.DatabaseID] {
			out = append(out, DatabaseStatus{DatabaseID: t.DatabaseID, DatabaseName: t.DatabaseName, State: StateNever, Reason: "no backups in " + st.String(), Expected: true})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].DatabaseName != out[j].DatabaseName {
			return out[i].DatabaseName < out[j].DatabaseName
		}
		return out[i].DatabaseID < out[j].DatabaseID
	})
	return out, nil
}

func shelfStatus(ctx context.Context, st store.Store, s Shelf, opts StatusOptions) (DatabaseStatus, error) {
	ds := DatabaseStatus{DatabaseID: s.DatabaseID}
	for _, e := range s.Backups {
		if e.Manifest != nil {
			ds.Backups++
		}
	}
	reads := 0
	for i := len(s.Backups) - 1; i >= 0 && reads < MaxStatusReads; i-- {
		e := s.Backups[i]
		skip := func(reason string) { ds.Skipped = append(ds.Skipped, Skipped{Key: e.Key.Dump, Reason: reason}) }
		if e.Manifest == nil {
			skip("no manifest: the backup stopped before it was complete")
			continue
		}
		reads++
		m, err := ReadManifest(ctx, st, e.ManifestKey())
		var bad *BadManifestError
		switch {
		case errors.As(err, &bad):
			skip(bad.Msg)
			continue
		case errors.Is(err, store.ErrNotFound):
			skip("its manifest disappeared while listing (pruned meanwhile?)")
			continue
		case err != nil:
			return ds, storeError("find the newest good backup of "+s.DatabaseID, err)
		}
		if ds.DatabaseName == "" {
			ds.DatabaseName = m.DatabaseName
		}
		if v := m.Verification; v != nil && !v.OK {
			skip(fmt.Sprintf("failed verification at %s", v.VerifiedAt.UTC().Format(time.RFC3339)))
			continue
		}
		ds.LastGood, ds.LastGoodID = m, e.ID
		break
	}
	switch {
	case ds.LastGood == nil && len(ds.Skipped) > 0:
		ds.State, ds.Reason = StateNever, "no good backup; newest: "+ds.Skipped[0].Reason
	case ds.LastGood == nil:
		ds.State, ds.Reason = StateNever, "no backups"
	case len(ds.Skipped) > 0:
		ds.State, ds.Reason = StateFailed, "the newest backup is not good: "+ds.Skipped[0].Reason
	case opts.Now.Sub(ExportedAt(ds.LastGood)) > opts.StaleAfter:
		ds.State, ds.Reason = StateStale, fmt.Sprintf("newest good backup is %dh old, over the %gh threshold",
			int(opts.Now.Sub(ExportedAt(ds.LastGood)).Hours()), opts.StaleAfter.Hours())
	default:
		ds.State = StateOK
	}
	return ds, nil
}

// ExportedAt is when the backup's export completed (when it was stored, for
// a manifest that does not say).
func ExportedAt(m *Manifest) time.Time {
	if m.ExportCompletedAt.IsZero() {
		return m.StoredAt
	}
	return m.ExportCompletedAt
}

// Method says how a backup was made: "export" (D1's export API), the only
// method this version writes; manifests that do not say are exports.
func Method(*Manifest) string { return "export" }
