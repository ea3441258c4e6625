package backup_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/retention"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
	"github.com/d1backup/d1backup/internal/testenv"
)

const pruneDB = "0a1b2c3d-0000-4000-8000-00000000abcd"

func put(t *testing.T, st store.Store, key, body string) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, strings.NewReader(body), store.PutOptions{Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
}

// failGets answers GETs of keys ending in one of suffixes with status (or,
// for status 0, a timeout), as a misbehaving storage service would.
type failGets struct {
	base     http.RoundTripper
	suffixes []string
	status   int
}

func (f *failGets) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && slices.ContainsFunc(f.suffixes, func(s string) bool { return strings.HasSuffix(req.URL.Path, s) }) {
		if f.status == 0 {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ETIMEDOUT}
		}
		body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, http.StatusText(f.status))
		return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status), Header: http.Header{"Content-Type": {"application/xml"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
	}
	return f.base.RoundTrip(req)
}

// TestPruneDeletesOnlyWhatItIsSureOf: retention on a bucket where storage
// misbehaves and foreign objects sit beside the backups.
func TestPruneDeletesOnlyWhatItIsSureOf(t *testing.T) {
	s := testenv.RequireS3(t)
	now := time.Now().UTC()
	day := func(d int) time.Time { return now.Add(-time.Duration(d) * 24 * time.Hour) }
	for _, tt := range []struct {
		name string
		// setup writes the objects; it returns the keys that must survive
		// and the keys that must be gone.
		setup      func(t *testing.T, st store.Store) (survive, gone []string)
		policy     retention.Policy
		fault      *failGets
		wantWarned string
		// later runs the prune this long after the objects were written
		// (storage sets their modification times).
		later time.Duration
	}{
		{
			name:   "manifest GET fails with 503",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				old := putBackup(t, st, pruneDB, "shop", 1, day(10), nil)
				mid := putBackup(t, st, pruneDB, "shop", 2, day(5), nil)
				newest := putBackup(t, st, pruneDB, "shop", 3, day(2), nil)
				return []string{mid, mid + backup.ManifestSuffix, newest, newest + backup.ManifestSuffix}, []string{old, old + backup.ManifestSuffix}
			},
			fault:      &failGets{suffixes: []string{"00000002.sql.manifest.json"}, status: http.StatusServiceUnavailable},
			wantWarned: "could not be read",
		},
		{
			name:   "manifest GET forbidden",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(10), nil)
				b := putBackup(t, st, pruneDB, "shop", 2, day(5), nil)
				return []string{a, a + backup.ManifestSuffix, b, b + backup.ManifestSuffix}, nil
			},
			fault:      &failGets{suffixes: []string{"00000001.sql.manifest.json"}, status: http.StatusForbidden},
			wantWarned: "could not be read",
		},
		{
			name:   "manifest GET times out",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(10), nil)
				b := putBackup(t, st, pruneDB, "shop", 2, day(5), nil)
				return []string{a, a + backup.ManifestSuffix, b, b + backup.ManifestSuffix}, nil
			},
			fault:      &failGets{suffixes: []string{"00000001.sql.manifest.json"}},
			wantWarned: "could not be read",
		},
		{
			name:   "orphan manifest is not the newest good backup",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(10), nil)
				b := putBackup(t, st, pruneDB, "shop", 2, day(9), nil)
				c := putBackup(t, st, pruneDB, "shop", 3, day(8), nil)
				orphan := putBackup(t, st, pruneDB, "shop", 4, day(1), nil)
				if err := st.Delete(context.Background(), orphan); err != nil {
					t.Fatal(err)
				}
				return []string{c, c + backup.ManifestSuffix}, []string{a, a + backup.ManifestSuffix, b, b + backup.ManifestSuffix, orphan + backup.ManifestSuffix}
			},
		},
		{
			name:   "foreign files are never touched",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(10), nil)
				b := putBackup(t, st, pruneDB, "shop", 2, day(1), nil)
				foreign := []string{pruneDB + "/notes.txt", pruneDB + "/sub/x.bin", pruneDB + "/README.manifest.json", pruneDB + "/00000001-00000000-00000000-00000000000000000000000000000001.sql.bak"}
				for _, k := range foreign {
					put(t, st, k, "not a backup")
				}
				return append(foreign, b, b+backup.ManifestSuffix), []string{a, a + backup.ManifestSuffix}
			},
			wantWarned: "not a d1backup key: left alone",
			later:      72 * time.Hour,
		},
		{
			name:   "corrupt manifest is kept for inspection",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(10), nil)
				b := putBackup(t, st, pruneDB, "shop", 2, day(1), nil)
				if err := st.Delete(context.Background(), a+backup.ManifestSuffix); err != nil {
					t.Fatal(err)
				}
				put(t, st, a+backup.ManifestSuffix, `{"format": 1, "key": "elsewhere/x.sql"}`)
				return []string{a, a + backup.ManifestSuffix, b, b + backup.ManifestSuffix}, nil
			},
			wantWarned: "not a d1backup manifest",
		},
		{
			name:   "dump not matching its manifest is kept",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(10), nil)
				b := putBackup(t, st, pruneDB, "shop", 2, day(1), nil)
				if err := st.Delete(context.Background(), a); err != nil {
					t.Fatal(err)
				}
				put(t, st, a, "shorter")
				return []string{a, a + backup.ManifestSuffix, b, b + backup.ManifestSuffix}, nil
			},
			wantWarned: "its manifest says",
		},
		{
			name:   "unfinished dump removed once old",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(1), nil)
				old := putBackup(t, st, pruneDB, "shop", 2, day(0), nil)
				if err := st.Delete(context.Background(), old+backup.ManifestSuffix); err != nil {
					t.Fatal(err)
				}
				return []string{a, a + backup.ManifestSuffix}, []string{old}
			},
			later: 48 * time.Hour,
		},
		{
			name:   "unfinished dump kept while young",
			policy: retention.Policy{KeepLast: 1},
			setup: func(t *testing.T, st store.Store) ([]string, []string) {
				a := putBackup(t, st, pruneDB, "shop", 1, day(1), nil)
				young := putBackup(t, st, pruneDB, "shop", 2, day(0), nil)
				if err := st.Delete(context.Background(), young+backup.ManifestSuffix); err != nil {
					t.Fatal(err)
				}
				return []string{a, a + backup.ManifestSuffix, young}, nil
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bucket := s.NewBucket(t)
			plain := r2Store(t, s, bucket, nil)
			survive, gone := tt.setup(t, plain)
			st := plain
			if tt.fault != nil {
				tt.fault.base = s.HTTPClient.Transport
				st = r2Store(t, s, bucket, &http.Client{Transport: tt.fault})
			}
			ctx := context.Background()
			dry, err := backup.Prune(ctx, st, pruneDB, tt.policy, now.Add(tt.later), true)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantWarned != "" && !strings.Contains(strings.Join(dry.Warnings, "\n"), tt.wantWarned) {
				t.Errorf("warnings %q lack %q", dry.Warnings, tt.wantWarned)
			}
			res, err := backup.Prune(ctx, st, pruneDB, tt.policy, now.Add(tt.later), false)
			if err != nil {
				t.Fatal(err)
			}
			// The dry run said exactly what the real run did.
			if got, want := planned(dry), planned(res); !slices.Equal(got, want) {
				t.Errorf("dry run planned\n%v\nthe real run did\n%v", got, want)
			}
			left := keys(t, plain)
			for _, k := range survive {
				if !slices.Contains(left, k) {
					t.Errorf("%s was deleted; left %v", k, left)
				}
			}
			for _, k := range gone {
				if slices.Contains(left, k) {
					t.Errorf("%s was kept; decisions %v", k, planned(res))
				}
			}
		})
	}
}

func planned(r backup.PruneResult) []string {
	var out []string
	for _, d := range r.Decisions {
		out = append(out, fmt.Sprintf("%s keep=%v", d.ID, d.Keep))
	}
	slices.Sort(out)
	return out
}

// TestListManifestsSkipsForeignAndCorrupt: one bad manifest-looking object
// must not hide every other backup.
func TestListManifestsSkipsForeignAndCorrupt(t *testing.T) {
	s := testenv.RequireS3(t)
	st := r2Store(t, s, s.NewBucket(t), nil)
	good := putBackup(t, st, pruneDB, "shop", 7, time.Now(), nil)
	put(t, st, "README.manifest.json", "hello")
	put(t, st, pruneDB+"/00000009-00000000-00000000-00000000000000000000000000000009.sql.manifest.json", "{not json")
	ms, skipped, err := backup.ListManifests(context.Background(), st, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Key != good {
		t.Errorf("manifests %v, want only %s", ms, good)
	}
	if len(skipped) != 2 {
		t.Errorf("skipped %v, want the two bad ones with reasons", skipped)
	}
}

// TestPruneInconsistentQueryDumpIsNotTheGoodOne: a query-API dump read while
// the database kept changing does not let the last consistent backup go.
func TestPruneInconsistentQueryDumpIsNotTheGoodOne(t *testing.T) {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	good := putBackup(t, st, pruneDB, "shop", 1, now.Add(-48*time.Hour), nil)
	torn := putBackup(t, st, pruneDB, "shop", 2, now.Add(-time.Hour), func(m *backup.Manifest) {
		m.Method = backup.MethodQuery
		m.Query = &backup.QueryRead{BookmarkBefore: m.Bookmark, BookmarkAfter: "ffffffff-00000000-00000000-00000000000000000000000000000000", Consistent: false, Reads: 3}
	})
	res, err := backup.Prune(context.Background(), st, pruneDB, retention.Policy{KeepLast: 1}, now, false)
	if err != nil {
		t.Fatal(err)
	}
	left := keys(t, st)
	if !slices.Contains(left, good) || !slices.Contains(left, good+backup.ManifestSuffix) {
		t.Errorf("the consistent backup was deleted; left %v; decisions %v", left, planned(res))
	}
	if !slices.Contains(left, torn) {
		t.Errorf("the newest (inconsistent) backup was deleted; left %v", left)
	}
}

// TestPruneCleansAbandonedUploads: what an interrupted store left (its
// checkpoint, its multipart upload; a folder's temporary files) is cleaned
// once untouched for a day, kept while fresh, and listed by the dry run.
func TestPruneCleansAbandonedUploads(t *testing.T) {
	s := testenv.RequireS3(t)
	for _, tt := range []struct {
		name string
		st   func(t *testing.T) store.Store
	}{
		{"r2", func(t *testing.T) store.Store { return r2Store(t, s, s.NewBucket(t), nil) }},
		{"folder", func(t *testing.T) store.Store {
			st, err := local.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st := tt.st(t)
			mp := st.(store.Multipart)
			good := putBackup(t, st, pruneDB, "shop", 1, time.Now().Add(-time.Hour), nil)
			// An interrupted store: a part uploaded, a checkpoint beside it.
			dump, err := backup.DumpKey(pruneDB, "00000002-00000000-00000000-00000000000000000000000000000002", "gzip", false)
			if err != nil {
				t.Fatal(err)
			}
			id, err := mp.CreateUpload(ctx, dump, store.UploadOptions{PartSize: store.MinPartSize})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mp.UploadPart(ctx, dump, id, 1, make([]byte, store.MinPartSize)); err != nil {
				t.Fatal(err)
			}
			put(t, st, dump+backup.CheckpointSuffix, `{"format":1}`)
			// An upload of a key that is not d1backup's is never touched.
			foreign := pruneDB + "/notes.bin"
			fid, err := mp.CreateUpload(ctx, foreign, store.UploadOptions{PartSize: store.MinPartSize})
			if err != nil {
				t.Fatal(err)
			}
			policy := retention.Policy{KeepLast: 5}

			// Fresh: nothing to clean.
			res, err := backup.Prune(ctx, st, pruneDB, policy, time.Now(), false)
			if err != nil || len(res.Cleaned) != 0 {
				t.Fatalf("fresh: cleaned %v (%v), want nothing", res.Cleaned, err)
			}
			later := time.Now().Add(backup.StaleAfter + time.Hour)
			dry, err := backup.Prune(ctx, st, pruneDB, policy, later, true)
			if err != nil || len(dry.Cleaned) != 2 {
				t.Fatalf("dry run a day later: cleaned %v (%v), want the checkpoint and the upload", dry.Cleaned, err)
			}
			if ups, _ := mp.ListUploads(ctx, backup.DatabasePrefix(pruneDB)); len(ups) != 2 {
				t.Fatalf("the dry run touched the uploads: %v", ups)
			}
			res, err = backup.Prune(ctx, st, pruneDB, policy, later, false)
			if err != nil || !slices.Equal(res.Cleaned, dry.Cleaned) {
				t.Fatalf("real run cleaned %v (%v), the dry run said %v", res.Cleaned, err, dry.Cleaned)
			}
			ups, err := mp.ListUploads(ctx, backup.DatabasePrefix(pruneDB))
			if err != nil || len(ups) != 1 || ups[0].Key != foreign || ups[0].ID != fid {
				t.Errorf("uploads left %v (%v), want only the foreign one", ups, err)
			}
			left := keys(t, st)
			if slices.Contains(left, dump+backup.CheckpointSuffix) || !slices.Contains(left, good) {
				t.Errorf("objects left %v: want the checkpoint gone, the backup kept", left)
			}
		})
	}
}
