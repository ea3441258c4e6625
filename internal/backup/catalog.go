package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"sync"

	"github.com/d1backup/d1backup/internal/store"
)

// IDLength is the length of a backup ID.
const IDLength = 8

// ID is the short name of the backup of database databaseID at bookmark:
// the first IDLength hex digits of SHA-256("<database id>/<bookmark>").
// It depends only on the key, so it is stable across listings and tools,
// and it does not rely on how D1 builds bookmarks (whose leading digits are
// a counter that barely changes between backups).
func ID(databaseID, bookmark string) string {
	sum := sha256.Sum256([]byte(databaseID + "/" + bookmark))
	return hex.EncodeToString(sum[:])[:IDLength]
}

// Entry is one backup as a listing shows it, before any manifest is read.
type Entry struct {
	// Key is the dump's key, parsed; Key.Dump is the dump's key.
	Key Key
	// ID is ID(Key.DatabaseID, Key.Bookmark).
	ID string
	// Dump is the stored dump, nil when only the manifest is listed.
	Dump *store.Object
	// Manifest is the manifest object, nil for a dump without one (an
	// unfinished or interrupted backup).
	Manifest *store.Object
}

// ManifestKey is the key of the entry's manifest.
func (e Entry) ManifestKey() string { return e.Key.Dump + ManifestSuffix }

// Shelf is the backups of one database in a listing, oldest first
// (bookmarks sort in time order).
type Shelf struct {
	DatabaseID string
	Backups    []Entry
}

// Catalog lists the destination once (under prefix, "" for all) and groups
// the keys of d1backup's grammar by database, without reading any
// manifest. Other keys are ignored. Shelves come sorted by database UUID.
func Catalog(ctx context.Context, st store.Store, prefix string) ([]Shelf, error) {
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return nil, storeError("list backups in "+st.String(), err)
	}
	byDump := map[string]*Entry{}
	for i := range objs {
		o := &objs[i]
		k, ok := ParseKey(o.Key)
		if !ok {
			continue
		}
		e := byDump[k.Dump]
		if e == nil {
			dk := k
			dk.Manifest = false
			e = &Entry{Key: dk, ID: ID(k.DatabaseID, k.Bookmark)}
			byDump[k.Dump] = e
		}
		if k.Manifest {
			e.Manifest = o
		} else {
			e.Dump = o
		}
	}
	byDB := map[string]*Shelf{}
	for _, e := range byDump {
		s := byDB[e.Key.DatabaseID]
		if s == nil {
			s = &Shelf{DatabaseID: e.Key.DatabaseID}
			byDB[e.Key.DatabaseID] = s
		}
		s.Backups = append(s.Backups, *e)
	}
	out := make([]Shelf, 0, len(byDB))
	for _, s := range byDB {
		sort.Slice(s.Backups, func(i, j int) bool { return s.Backups[i].Key.Dump < s.Backups[j].Key.Dump })
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DatabaseID < out[j].DatabaseID })
	return out, nil
}

// ReadManifests reads the manifests of entries, at most concurrency at
// once: ms[i] is entries[i]'s manifest, or nil with errs[i] saying why (no
// manifest listed: store.ErrNotFound). Once ctx ends, the reads not yet
// begun fail with its error.
func ReadManifests(ctx context.Context, st store.Store, entries []Entry, concurrency int) (ms []*Manifest, errs []error) {
	ms, errs = make([]*Manifest, len(entries)), make([]error, len(entries))
	started := make([]bool, len(entries))
	forEach(ctx, len(entries), concurrency, func(i int) {
		started[i] = true
		if entries[i].Manifest == nil {
			errs[i] = store.ErrNotFound
			return
		}
		ms[i], errs[i] = ReadManifest(ctx, st, entries[i].ManifestKey())
	})
	for i := range entries {
		if !started[i] {
			errs[i] = ctx.Err()
		}
	}
	return ms, errs
}

// forEach calls f(0) … f(n-1), at most concurrency at once, and returns
// when all calls have. Once ctx ends no new call starts.
func forEach(ctx context.Context, n, concurrency int, f func(i int)) {
	concurrency = max(1, min(concurrency, n))
	var (
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}
