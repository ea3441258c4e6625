package backup_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/restore"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
	"github.com/d1backup/d1backup/internal/testenv"
)

// exact holds the values that must come back byte-exact.
const exact = `CREATE TABLE exact (id INTEGER PRIMARY KEY, v);
INSERT INTO exact (v) VALUES (9223372036854775807), (-9223372036854775808), (9007199254740993), (0.1), (1e308), (-0.0),
  (X'00FF000A'), ('it''s "q"' || char(10) || 'next line'), ('Zoë ★ 🙂'), ('a' || char(0) || 'b'), (NULL);`

// searchEnv is an emulator holding a database D1 cannot export: FTS5 tables
// of every kind over articles, and the exact values.
func searchEnv(t *testing.T, opts d1emu.Options, dbOpts ...d1emu.DatabaseOption) *env {
	t.Helper()
	emu := d1emutest.Start(t, opts)
	db := emu.MustCreate(t, "search", d1emu.FTS5SQL()+exact, dbOpts...)
	cfg := d1.NewConfig(emu.AccountID(), emu.Token(), emu.BaseURL)
	cfg.HTTPClient, cfg.MaxRetries = emu.HTTP.Client(), 0
	api, err := d1.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{emu: emu, api: api, db: db}
}

func queryRunner(t *testing.T, e *env, st store.Store, mod func(*backup.Config)) *backup.Runner {
	t.Helper()
	cfg := testConfig("gzip")
	cfg.PollInterval = time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	r, err := backup.NewRunner(e.api, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readManifest(t *testing.T, st store.Store, sum backup.Summary) *backup.Manifest {
	t.Helper()
	m, err := backup.ReadManifest(context.Background(), st, sum.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// answers runs the queries a user would check a restore with: MATCH on the
// contentful and the external-content table, and every exact value.
func answers(t *testing.T, query func(q string) []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range []string{"articles_fts", "articles_ext"} {
		for _, m := range []string{"nightly", "line", "semicolon", "gap OR notes", "zoë", "brien", "backup*"} {
			q := `SELECT quote(rowid) || ':' || quote(highlight(` + table + `, 0, '[', ']')) FROM ` + table + ` WHERE ` + table + ` MATCH '` + m + `' ORDER BY rowid`
			out[table+" "+m] = query(q)
		}
	}
	out["exact"] = query(`SELECT quote(id) || ':' || typeof(v) || ':' || quote(CAST(v AS BLOB)) || ':' || quote(v) FROM exact ORDER BY id`)
	out["cl"] = query(`SELECT count(*) FROM articles_cl`)
	return out
}

func sqliteAnswers(t *testing.T, db *sql.DB) map[string][]string {
	return answers(t, func(q string) []string {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s []byte
			rows.Scan(&s)
			out = append(out, string(s))
		}
		return out
	})
}

func d1Answers(t *testing.T, api *d1.Client, id string) map[string][]string {
	return answers(t, func(q string) []string {
		res, err := api.Raw(context.Background(), id, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var out []string
		for _, r := range res[0].Rows {
			switch v := r[0].(type) {
			case string:
				out = append(out, v)
			case float64: // count(*)
				out = append(out, strconv.FormatFloat(v, 'f', -1, 64))
			}
		}
		return out
	})
}

// TestQueryBackupFTS5: a database D1 refuses to export backs up through the
// query API (the default method falls back to it), into versitygw, and
// restores into SQLite and into D1 answering the same MATCH queries with the
// same values, byte for byte; the contentless table comes back empty, with
// the warning in the summary and the manifest.
func TestQueryBackupFTS5(t *testing.T) {
	s := testenv.RequireS3(t)
	e := searchEnv(t, d1emu.Options{ExportPolls: 1})
	st := r2Store(t, s, s.NewBucket(t), nil)
	sum, err := queryRunner(t, e, st, nil).Run(context.Background(), backup.Target{DatabaseName: "search"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Method != backup.MethodQuery || sum.Consistent == nil || !*sum.Consistent || len(sum.Warnings) != 1 || !strings.Contains(sum.Warnings[0], "articles_cl") {
		t.Errorf("summary %+v, want a consistent query backup with one warning about articles_cl", sum)
	}
	m := readManifest(t, st, sum)
	bm, _ := e.api.Bookmark(context.Background(), e.db.UUID)
	if m.Method != backup.MethodQuery || m.Query == nil || !m.Query.Consistent || m.Query.BookmarkBefore != bm || m.Query.BookmarkAfter != bm ||
		m.Bookmark != bm || m.BlockedSeconds != 0 || m.Query.Reads != 1 || len(m.Warnings) != 1 {
		t.Errorf("manifest method %q query %+v bookmark %s blocked %v warnings %q, want query at %s both sides, one read, nothing blocked",
			m.Method, m.Query, m.Bookmark, m.BlockedSeconds, m.Warnings, bm)
	}
	if !strings.Contains(sum.Key, bm) {
		t.Errorf("key %s is not under the bookmark read before the read (%s)", sum.Key, bm)
	}
	src, err := e.emu.DBPath(e.db.UUID)
	if err != nil {
		t.Fatal(err)
	}
	want := sqliteAnswers(t, openDB(t, src))
	want["cl"] = []string{"0"} // contentless: recreated empty

	path := filepath.Join(t.TempDir(), "restored.sqlite")
	if _, err := restore.ToSQLite(context.Background(), restore.Source{Store: st, Key: sum.Key}, path, false, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, "SQLite", sqliteAnswers(t, openDB(t, path)), want)

	res, err := restore.ToD1(context.Background(), e.api, restore.Source{Store: st, Key: sum.Key}, restore.Target{Create: "search-restored"}, restore.Options{PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, "D1", d1Answers(t, e.api, res.DatabaseID), want)

	rep, err := restore.Verify(context.Background(), restore.Source{Store: st, Key: sum.Key}, restore.Options{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep == nil {
		t.Fatal("no verification report")
	}
}

func sameAnswers(t *testing.T, where string, got, want map[string][]string) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; !slices.Equal(g, w) {
			t.Errorf("%s: %s = %q, want %q", where, k, g, w)
		}
	}
}

// TestQueryWriteBetweenPages: a write that lands between two pages is seen
// (the bookmark moved), the read is done again and the backup is of one
// state; a database that keeps changing is stored marked inconsistent,
// after QueryReads reads, and every discarded read left nothing behind.
func TestQueryWriteBetweenPages(t *testing.T) {
	const write = `INSERT INTO articles (id, title, body) VALUES (100 + (SELECT count(*) FROM articles), 'written', 'between pages')`
	for _, tt := range []struct {
		name       string
		times      int
		consistent bool
		reads      int
	}{
		{"once", 1, true, 2},
		{"always", 1000, false, backup.QueryReads},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := searchEnv(t, d1emu.Options{})
			e.emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointRaw, Kind: d1emu.FaultWrite, SQL: write, After: 2, Times: tt.times})
			dir := t.TempDir()
			st, err := local.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			var slept []time.Duration
			r := queryRunner(t, e, st, func(c *backup.Config) {
				c.Method = backup.MethodQuery
				c.Sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
			})
			sum, err := r.Run(context.Background(), backup.Target{DatabaseName: "search"})
			if err != nil {
				t.Fatal(err)
			}
			m := readManifest(t, st, sum)
			if got := *sum.Consistent; got != tt.consistent || m.Query.Consistent != tt.consistent || m.Query.Reads != tt.reads {
				t.Errorf("consistent %v (manifest %v) after %d reads, want %v after %d", got, m.Query.Consistent, m.Query.Reads, tt.consistent, tt.reads)
			}
			if len(slept) != tt.reads-1 {
				t.Errorf("waited %d times between reads, want %d", len(slept), tt.reads-1)
			}
			inconsistent := slices.ContainsFunc(sum.Warnings, func(w string) bool { return strings.HasPrefix(w, "inconsistent:") })
			if inconsistent == tt.consistent || (m.Query.BookmarkBefore == m.Query.BookmarkAfter) != tt.consistent {
				t.Errorf("warnings %q, bookmarks %s → %s: want the inconsistency said exactly when there was one", sum.Warnings, m.Query.BookmarkBefore, m.Query.BookmarkAfter)
			}
			if got := keys(t, st); len(got) != 2 {
				t.Errorf("objects %v, want one dump and its manifest (discarded reads leave nothing)", got)
			}
			if tt.consistent {
				// The dump is the state after the write: restored, it has the row.
				path := filepath.Join(t.TempDir(), "r.sqlite")
				if _, err := restore.ToSQLite(context.Background(), restore.Source{Store: st, Key: sum.Key}, path, false, restore.Options{}); err != nil {
					t.Fatal(err)
				}
				var n int
				if err := openDB(t, path).QueryRow(`SELECT count(*) FROM articles WHERE title = 'written'`).Scan(&n); err != nil || n != 1 {
					t.Errorf("restored %d written rows (%v), want 1", n, err)
				}
			}
		})
	}
}

// TestQueryRerun: a rerun at an unchanged bookmark finds the backup stored
// and reads nothing; after a write it backs up again under the new bookmark.
func TestQueryRerun(t *testing.T) {
	e := searchEnv(t, d1emu.Options{})
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := queryRunner(t, e, st, func(c *backup.Config) { c.Method = backup.MethodQuery })
	first, err := r.Run(context.Background(), backup.Target{DatabaseName: "search"})
	if err != nil {
		t.Fatal(err)
	}
	e.emu.ResetRequests()
	again, err := r.Run(context.Background(), backup.Target{DatabaseName: "search"})
	if err != nil || !again.AlreadyExisted || again.Key != first.Key || again.SQLSHA256 != first.SQLSHA256 {
		t.Fatalf("rerun = %+v (%v), want the first backup, already stored", again, err)
	}
	for _, req := range e.emu.Requests() {
		if req.Endpoint == d1emu.EndpointRaw || req.Endpoint == d1emu.EndpointQuery || req.Endpoint == d1emu.EndpointExport {
			t.Errorf("rerun asked D1 for %s %s", req.Endpoint, req.Path)
		}
	}
	e.emu.MustExec(t, e.db.UUID, `INSERT INTO articles (id, title) VALUES (50, 'new')`)
	third, err := r.Run(context.Background(), backup.Target{DatabaseName: "search"})
	if err != nil || third.AlreadyExisted || third.Bookmark <= first.Bookmark {
		t.Errorf("after a write = %+v (%v), want a new backup at a later bookmark", third, err)
	}
	if got := keys(t, st); len(got) != 4 {
		t.Errorf("objects %v, want two backups with their manifests", got)
	}
}

// TestRouting: what the start and poll steps answer, per method, for a
// database D1 can export and one it cannot. StatusQuery sends the workflow
// to the query step.
func TestRouting(t *testing.T) {
	for _, tt := range []struct {
		method   string
		fts5     bool
		want     string
		exported bool
	}{
		{backup.MethodQuery, false, backup.StatusQuery, false},
		{backup.MethodQuery, true, backup.StatusQuery, false},
		{backup.MethodAuto, false, backup.StatusComplete, true},
		{backup.MethodAuto, true, backup.StatusQuery, true},
		{backup.MethodExport, true, backup.StatusError, true},
	} {
		var e *env
		if tt.fts5 {
			e = searchEnv(t, d1emu.Options{ExportPolls: 1})
		} else {
			e = newEnv(t, d1emu.Options{ExportPolls: 1})
		}
		st, _ := local.New(t.TempDir())
		r := queryRunner(t, e, st, func(c *backup.Config) { c.Method = tt.method })
		ctx := context.Background()
		exp, err := r.Start(ctx, backup.Export{DatabaseName: e.db.Name})
		for err == nil && exp.Status == backup.StatusActive {
			exp, err = r.Poll(ctx, exp)
		}
		if err != nil || exp.Status != tt.want {
			t.Errorf("%s, fts5 %v: status %q (%v), want %q", tt.method, tt.fts5, exp.Status, err, tt.want)
		}
		exported := slices.ContainsFunc(e.emu.Requests(), func(r d1emu.Request) bool { return r.Endpoint == d1emu.EndpointExport })
		if exported != tt.exported {
			t.Errorf("%s, fts5 %v: export started %v, want %v", tt.method, tt.fts5, exported, tt.exported)
		}
		if tt.want == backup.StatusQuery {
			sum, err := r.Query(ctx, exp)
			if err != nil || sum.Method != backup.MethodQuery {
				t.Errorf("%s, fts5 %v: query step = %+v (%v)", tt.method, tt.fts5, sum, err)
			}
		}
	}
	// The query step takes only what the start or poll step said to query.
	e := newEnv(t, d1emu.Options{})
	st, _ := local.New(t.TempDir())
	_, err := queryRunner(t, e, st, nil).Query(context.Background(), backup.Export{DatabaseID: e.db.UUID, Status: backup.StatusComplete})
	if !errors.As(err, new(*backup.ConfigError)) {
		t.Errorf("query of a complete export = %v, want ConfigError", err)
	}
}

// TestResidency: an EU database is refused for a bucket outside the EU,
// before D1 is asked for anything that reads it; allowed explicitly, or into
// an EU bucket, or into a folder, it backs up.
func TestResidency(t *testing.T) {
	s := testenv.RequireS3(t)
	for _, tt := range []struct {
		name  string
		dest  string // jurisdiction of the destination; "" a folder
		allow bool
		ok    bool
	}{
		{"EU database, default bucket", "default", false, false},
		{"EU database, FedRAMP bucket", "fedramp", false, false},
		{"allowed explicitly", "default", true, true},
		{"EU bucket", "eu", false, true},
		{"folder", "", false, true},
	} {
		for _, method := range []string{backup.MethodExport, backup.MethodQuery} {
			t.Run(tt.name+" "+method, func(t *testing.T) {
				e := searchEnv(t, d1emu.Options{}, d1emu.WithJurisdiction("eu"))
				var st store.Store
				if tt.dest == "" {
					st, _ = local.New(t.TempDir())
				} else {
					st = r2Store(t, s, s.NewBucket(t), nil)
				}
				r := queryRunner(t, e, st, func(c *backup.Config) {
					c.Method, c.DestJurisdiction, c.AllowCrossJurisdiction = backup.MethodAuto, tt.dest, tt.allow
					if method == backup.MethodQuery {
						c.Method = method
					}
				})
				e.emu.ResetRequests()
				_, err := r.Run(context.Background(), backup.Target{DatabaseID: e.db.UUID, DatabaseName: "search"})
				if tt.ok {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				var re *backup.ResidencyError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), "eu jurisdiction") || backup.KindOf(err) != backup.Permanent {
					t.Fatalf("Run = %v, want a permanent ResidencyError", err)
				}
				if got := backup.Classified(err); got != error(re) {
					t.Errorf("Classified = %T, want the ResidencyError", got)
				}
				for _, req := range e.emu.Requests() {
					if req.Endpoint != d1emu.EndpointGet && req.Endpoint != d1emu.EndpointList {
						t.Errorf("D1 was asked for %s %s though the backup is refused", req.Endpoint, req.Path)
					}
				}
				if got := keys(t, st); len(got) != 0 {
					t.Errorf("objects written: %v", got)
				}
				// The query step holds its input to the rule too.
				_, err = r.Query(context.Background(), backup.Export{DatabaseID: e.db.UUID, Status: backup.StatusQuery})
				if !errors.As(err, &re) {
					t.Errorf("query step = %v, want ResidencyError", err)
				}
			})
		}
	}
}

// TestQueryEncrypted: a query backup is compressed and encrypted like an
// export: the writer holds only the recipient, the identity restores it.
func TestQueryEncrypted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e := searchEnv(t, d1emu.Options{})
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := queryRunner(t, e, st, func(c *backup.Config) {
		c.Method, c.Compression, c.Recipients = backup.MethodQuery, "zstd", []string{id.Recipient().String()}
	})
	sum, err := r.Run(context.Background(), backup.Target{DatabaseName: "search"})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Encrypted || !strings.HasSuffix(sum.Key, ".sql.zst.age") || bytes.Contains(get(t, st, sum.Key), []byte("Nightly")) {
		t.Errorf("summary %+v: want an encrypted zstd backup whose bytes hide the text", sum)
	}
	path := filepath.Join(t.TempDir(), "r.sqlite")
	src := restore.Source{Store: st, Key: sum.Key}
	if _, err := restore.ToSQLite(context.Background(), src, path, false, restore.Options{}); err == nil {
		t.Error("restored without the identity")
	}
	if _, err := restore.ToSQLite(context.Background(), src, path, false, restore.Options{Identities: []age.Identity{id}}); err != nil {
		t.Fatal(err)
	}
	var title string
	if err := openDB(t, path).QueryRow(`SELECT title FROM articles_fts WHERE articles_fts MATCH 'nightly'`).Scan(&title); err != nil || title != "Nightly backups" {
		t.Errorf("restored MATCH = %q (%v)", title, err)
	}
}

// TestQueryReplacesAnAbandonedRead: a read cut between its dump and its
// manifest leaves the dump alone under the key; the next backup of the same
// bookmark (gzip: the pipeline takes bytes before the upload looks at the
// key) waits while it may be in progress, then replaces it.
func TestQueryReplacesAnAbandonedRead(t *testing.T) {
	e := searchEnv(t, d1emu.Options{})
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := queryRunner(t, e, st, func(c *backup.Config) { c.Method = backup.MethodQuery }).Run(ctx, backup.Target{DatabaseName: "search"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, first.ManifestKey); err != nil {
		t.Fatal(err)
	}
	young, err := queryRunner(t, e, st, func(c *backup.Config) { c.Method = backup.MethodQuery; c.MaxRetries = 0 }).Run(ctx, backup.Target{DatabaseName: "search"})
	var su *backup.StoreUnavailableError
	if !errors.As(err, &su) || !strings.Contains(err.Error(), "another backup may be finishing it") {
		t.Fatalf("with a young unfinished read under the key: %+v, %v; want StoreUnavailableError (retry later)", young, err)
	}
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	again, err := queryRunner(t, e, st, func(c *backup.Config) { c.Method = backup.MethodQuery; c.Now = later }).Run(ctx, backup.Target{DatabaseName: "search"})
	if err != nil || again.AlreadyExisted || again.Key != first.Key || again.SQLSHA256 != first.SQLSHA256 {
		t.Fatalf("an hour later = %+v (%v), want the same backup stored again", again, err)
	}
	if _, err := st.Stat(ctx, again.ManifestKey); err != nil {
		t.Errorf("no manifest: %v", err)
	}
}
