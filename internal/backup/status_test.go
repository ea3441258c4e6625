package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
)

// countingStore counts the Gets that reach a real store.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

// putBackup stores a dump and, unless manifest is nil, a manifest as the
// pipeline writes them, for database id at bookmark n exported at at.
func putBackup(t testing.TB, st store.Store, id, name string, n int, at time.Time, edit func(m *backup.Manifest)) string {
	t.Helper()
	ctx := context.Background()
	bookmark := fmt.Sprintf("%08x-00000000-00000000-%032x", n, n)
	key, err := backup.DumpKey(id, bookmark, "none", false)
	if err != nil {
		t.Fatal(err)
	}
	sql := []byte("CREATE TABLE t (x);\n")
	if _, err := st.Put(ctx, key, bytes.NewReader(sql), store.PutOptions{Size: int64(len(sql))}); err != nil {
		t.Fatal(err)
	}
	m := &backup.Manifest{Format: backup.ManifestFormat, Tool: "d1backup", ToolVersion: "test", DatabaseID: id, DatabaseName: name,
		Bookmark: bookmark, Key: key, ExportStartedAt: at, ExportCompletedAt: at, StoredAt: at, Compression: "none",
		SQLBytes: int64(len(sql)), SQLSHA256: sha(sql), StoredBytes: int64(len(sql)), StoredSHA256: sha(sql)}
	if edit != nil {
		edit(m)
	}
	if m.Key == "" {
		return key // no manifest: an interrupted backup
	}
	b, _ := json.Marshal(m)
	if _, err := st.Put(ctx, key+backup.ManifestSuffix, bytes.NewReader(b), store.PutOptions{Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
	return key
}

const (
	dbA = "aaaaaaaa-0000-4000-8000-000000000001"
	dbB = "bbbbbbbb-0000-4000-8000-000000000002"
	dbC = "cccccccc-0000-4000-8000-000000000003"
	dbD = "dddddddd-0000-4000-8000-000000000004"
	dbE = "eeeeeeee-0000-4000-8000-000000000005"
)

func noManifest(m *backup.Manifest) { m.Key = "" }

func TestCatalog(t *testing.T) {
	ctx := context.Background()
	st, _ := local.New(t.TempDir())
	now := time.Now().UTC()
	k1 := putBackup(t, st, dbA, "a", 1, now, nil)
	k2 := putBackup(t, st, dbA, "a", 2, now, noManifest)
	k3 := putBackup(t, st, dbB, "b", 7, now, nil)
	for _, foreign := range []string{"notes.txt", dbA + "/readme.md", "x/1.sql.manifest.json"} {
		st.Put(ctx, foreign, strings.NewReader("x"), store.PutOptions{Size: 1}) //nolint:errcheck
	}
	shelves, err := backup.Catalog(ctx, st, "")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		db, dump, id string
		manifest     bool
	}
	var got []row
	for _, s := range shelves {
		for _, e := range s.Backups {
			got = append(got, row{s.DatabaseID, e.Key.Dump, e.ID, e.Manifest != nil})
		}
	}
	want := []row{
		{dbA, k1, backup.ID(dbA, strings.TrimSuffix(k1[len(dbA)+1:], ".sql")), true},
		{dbA, k2, backup.ID(dbA, strings.TrimSuffix(k2[len(dbA)+1:], ".sql")), false},
		{dbB, k3, backup.ID(dbB, strings.TrimSuffix(k3[len(dbB)+1:], ".sql")), true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("catalog\n got %v\nwant %v", got, want)
	}
	if id := got[0].id; len(id) != backup.IDLength || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("ID %q is not %d hex digits", id, backup.IDLength)
	}
	if got[0].id == got[1].id {
		t.Error("two backups share an ID")
	}
	if got, want := backup.ID(dbA, "x"), backup.ID(dbB, "x"); got == want {
		t.Error("the same bookmark in two databases gives the same ID")
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	st, _ := local.New(t.TempDir())
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	// a: fresh and verified. b: stale. c: newest backup interrupted, an
	// older one good. d: newest failed verification, older good. e: only a
	// manifest that is not one.
	putBackup(t, st, dbA, "alpha", 1, now.Add(-50*time.Hour), nil)
	putBackup(t, st, dbA, "alpha", 2, now.Add(-2*time.Hour), func(m *backup.Manifest) {
		m.Verification = &backup.Verification{OK: true, VerifiedAt: now.Add(-time.Hour)}
	})
	putBackup(t, st, dbB, "beta", 1, now.Add(-40*time.Hour), nil)
	putBackup(t, st, dbC, "gamma", 1, now.Add(-3*time.Hour), nil)
	putBackup(t, st, dbC, "gamma", 2, now.Add(-time.Hour), noManifest)
	putBackup(t, st, dbD, "delta", 1, now.Add(-3*time.Hour), nil)
	putBackup(t, st, dbD, "delta", 2, now.Add(-time.Hour), func(m *backup.Manifest) {
		m.Verification = &backup.Verification{OK: false, VerifiedAt: now, Problems: []string{"integrity_check: bad"}}
	})
	putBackup(t, st, dbE, "epsilon", 1, now.Add(-time.Hour), func(m *backup.Manifest) { m.Bookmark = "other" })

	statuses, err := backup.Status(ctx, st, backup.StatusOptions{Now: now, StaleAfter: 36 * time.Hour, Concurrency: 3,
		Expected: []backup.Target{{DatabaseID: dbA, DatabaseName: "alpha"}, {DatabaseID: dbB, DatabaseName: "beta"},
			{DatabaseID: dbC, DatabaseName: "gamma"}, {DatabaseID: dbD, DatabaseName: "delta"},
			{DatabaseID: "ffffffff-0000-4000-8000-000000000006", DatabaseName: "zeta"}}})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name     string
		state    backup.State
		backups  int
		lastGood string
		expected bool
	}
	var got []row
	for _, s := range statuses {
		lg := ""
		if s.LastGood != nil {
			lg = s.LastGood.Bookmark[:8]
		}
		got = append(got, row{s.DatabaseName, s.State, s.Backups, lg, s.Expected})
	}
	want := []row{
		{"", backup.StateNever, 1, "", false}, // epsilon: unreadable, not in the account
		{"alpha", backup.StateOK, 2, "00000002", true},
		{"beta", backup.StateStale, 1, "00000001", true},
		{"delta", backup.StateFailed, 2, "00000001", true},
		{"gamma", backup.StateFailed, 1, "00000001", true},
		{"zeta", backup.StateNever, 0, "", true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("status\n got %v\nwant %v", got, want)
	}
	for _, s := range statuses {
		if s.State != backup.StateOK && s.Reason == "" {
			t.Errorf("%s: state %s without a reason", s.DatabaseName, s.State)
		}
	}
}

// TestStatusBoundedReads: a database with many backups costs one manifest
// read when its newest is good, and at most MaxStatusReads when none is.
func TestStatusBoundedReads(t *testing.T) {
	ctx := context.Background()
	base, _ := local.New(t.TempDir())
	now := time.Now().UTC()
	for i := 1; i <= 40; i++ {
		putBackup(t, base, dbA, "alpha", i, now.Add(-time.Duration(50-i)*time.Hour), nil)
		putBackup(t, base, dbB, "beta", i, now.Add(-time.Duration(50-i)*time.Hour), func(m *backup.Manifest) {
			m.Verification = &backup.Verification{OK: false, VerifiedAt: now}
		})
	}
	st := &countingStore{Store: base}
	statuses, err := backup.Status(ctx, st, backup.StatusOptions{Now: now, StaleAfter: time.Hour * 36, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.gets.Load(), int64(1+backup.MaxStatusReads); got != want {
		t.Errorf("manifest reads: %d, want %d", got, want)
	}
	if got := statuses[1].State; got != backup.StateNever {
		t.Errorf("beta (all failed): %s, want NEVER", got)
	}
}

// failingStore fails every Get the way an unreachable bucket does.
type failingStore struct{ store.Store }

func (failingStore) Get(context.Context, string) (io.ReadCloser, error) {
	return nil, store.Transient(errors.New("503 slow down"))
}

func TestStatusStoreFailure(t *testing.T) {
	base, _ := local.New(t.TempDir())
	putBackup(t, base, dbA, "alpha", 1, time.Now(), nil)
	_, err := backup.Status(context.Background(), failingStore{base}, backup.StatusOptions{Now: time.Now(), StaleAfter: time.Hour, Concurrency: 1})
	var unavailable *backup.StoreUnavailableError
	if !errors.As(err, &unavailable) {
		t.Fatalf("err %v, want a StoreUnavailableError (a guess is worse than an error)", err)
	}
}

func TestRunMany(t *testing.T) {
	targets := []backup.Target{{DatabaseName: "a"}, {DatabaseName: "b"}, {DatabaseName: "c"}, {DatabaseName: "d"}, {DatabaseName: "e"}}
	var (
		mu            sync.Mutex
		running, peak int
	)
	run := func(ctx context.Context, tg backup.Target) (backup.Summary, error) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		if tg.DatabaseName == "b" {
			return backup.Summary{}, &backup.ConfigError{Msg: "boom"}
		}
		return backup.Summary{DatabaseName: tg.DatabaseName}, nil
	}
	out := backup.RunMany(context.Background(), targets, 2, run)
	var got []string
	for _, o := range out {
		s := o.Target.DatabaseName + "=" + o.Summary.DatabaseName
		if o.Err != nil {
			s = o.Target.DatabaseName + "=" + fmt.Sprintf("%T", o.Err)
		}
		got = append(got, s)
	}
	if want := "a=a b=*backup.ConfigError c=c d=d e=e"; strings.Join(got, " ") != want {
		t.Errorf("outcomes %v, want %s", got, want)
	}
	if peak != 2 {
		t.Errorf("peak concurrency %d, want 2", peak)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, o := range backup.RunMany(ctx, targets, 2, run) {
		if o.Err == nil {
			t.Errorf("%s ran after the context ended", o.Target.DatabaseName)
		}
	}
}

// TestOnExport: the hook sees the export start and every poll, with the
// polls counted, before the dump is stored.
func TestOnExport(t *testing.T) {
	e := newEnv(t, d1emu.Options{ExportPolls: 3})
	st, _ := local.New(t.TempDir())
	cfg := testConfig("gzip")
	var seen []string
	cfg.OnExport = func(x backup.Export) { seen = append(seen, fmt.Sprintf("%s/%d", x.Status, x.Polls)) }
	r, err := backup.NewRunner(e.api, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), backup.Target{DatabaseName: "shop"}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(seen, " "), "active/0 active/1 active/2 complete/3"; got != want {
		t.Errorf("OnExport saw %s, want %s", got, want)
	}
}

// BenchmarkStatus compares Status (bounded reads per database) with
// reading every manifest (ListManifests, what a status built on list would
// do) over 40 databases of 50 backups each. reads/op counts manifest GETs.
func BenchmarkStatus(b *testing.B) {
	base, _ := local.New(b.TempDir())
	now := time.Now().UTC()
	for d := range 40 {
		id := fmt.Sprintf("%08x-0000-4000-8000-000000000000", d)
		for n := 1; n <= 50; n++ {
			putBackup(b, base, id, fmt.Sprintf("db%d", d), n, now.Add(-time.Duration(60-n)*time.Hour), nil)
		}
	}
	for _, bb := range []struct {
		name string
		run  func(st store.Store) error
	}{
		{"status", func(st store.Store) error {
			_, err := backup.Status(context.Background(), st, backup.StatusOptions{Now: now, StaleAfter: 36 * time.Hour, Concurrency: 4})
			return err
		}},
		{"every-manifest", func(st store.Store) error {
			_, _, err := backup.ListManifests(context.Background(), st, "")
			return err
		}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			st := &countingStore{Store: base}
			for b.Loop() {
				if err := bb.run(st); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.gets.Load())/float64(b.N), "reads/op")
		})
	}
}
