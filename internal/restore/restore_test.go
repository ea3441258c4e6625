package restore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	_ "modernc.org/sqlite"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/restore"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
)

type world struct {
	emu   *d1emu.Server
	api   *d1.Client
	store *local.Store
	dir   string
	src   d1emu.Database
}

func newWorld(t *testing.T) *world {
	t.Helper()
	emu := d1emutest.Start(t, d1emu.Options{})
	dcfg := d1.NewConfig(emu.AccountID(), emu.Token(), emu.BaseURL)
	dcfg.HTTPClient, dcfg.MaxRetries = emu.HTTP.Client(), 1
	api, err := d1.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := local.New(filepath.Join(dir, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	return &world{emu: emu.Server, api: api, store: st, dir: dir, src: emu.MustCreate(t, "shop", d1emu.SampleSQL)}
}

func (w *world) backup(t *testing.T, compression string, recipients ...string) backup.Summary {
	t.Helper()
	cfg := config.Defaults().Backup("test")
	cfg.Compression, cfg.PollInterval, cfg.Recipients = compression, time.Millisecond, recipients
	r, err := backup.NewRunner(w.api, w.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(context.Background(), backup.Target{DatabaseID: w.src.UUID})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func (w *world) opts() restore.Options {
	return restore.Options{TempDir: w.dir, PollInterval: time.Millisecond}
}

func (w *world) dbPath(t *testing.T, id string) string {
	t.Helper()
	p, err := w.emu.DBPath(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// contents renders every user table of a SQLite file with quote(), rows
// sorted, and the schema: equal contents, equal strings.
func contents(t *testing.T, path string) map[string][]string {
	t.Helper()
	db := openRO(t, path)
	out := map[string][]string{}
	tables := query(t, db, `SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	for _, tb := range tables {
		cols := query(t, db, `SELECT 'quote("'||name||'")' FROM pragma_table_info('`+tb+`')`)
		rows := query(t, db, `SELECT `+strings.Join(cols, "||','||")+` FROM "`+tb+`"`)
		slices.Sort(rows)
		out[tb] = rows
	}
	out["(schema)"] = query(t, db, `SELECT type||' '||name||' '||coalesce(sql,'') FROM sqlite_schema WHERE name NOT LIKE 'sqlite\_autoindex%' ESCAPE '\' ORDER BY name`)
	out["(sequence)"] = query(t, db, `SELECT name||'='||seq FROM sqlite_sequence ORDER BY name`)
	return out
}

func query(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func equalContents(t *testing.T, got, want map[string][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("tables: got %d, want %d", len(got), len(want))
	}
	for name, w := range want {
		if g := got[name]; !slices.Equal(g, w) {
			t.Errorf("%s: got %d rows, want %d; first difference in\n got %.300q\nwant %.300q", name, len(g), len(w), g, w)
		}
	}
}

func TestRoundTripIntoNewDatabase(t *testing.T) {
	t.Parallel()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		compression string
		recipients  []string
	}{
		{"gzip", nil}, {"zstd", nil}, {"none", nil}, {"zstd", []string{id.Recipient().String()}},
	} {
		name := tt.compression
		if tt.recipients != nil {
			name += "+age"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			sum := w.backup(t, tt.compression, tt.recipients...)
			opts := w.opts()
			if tt.recipients != nil {
				opts.Identities = []age.Identity{id}
			}
			// The manifest's key works as well as the dump's.
			res, err := restore.ToD1(context.Background(), w.api, restore.Source{Store: w.store, Key: sum.ManifestKey}, restore.Target{Create: "shop-restored"}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Created || res.DatabaseName != "shop-restored" || res.FromBookmark != sum.Bookmark || res.SQLSHA256 != sum.SQLSHA256 {
				t.Errorf("result %+v does not describe the restore of %+v", res, sum)
			}
			if res.NumQueries != res.Statements || res.NumQueries < 100 || res.RowsWritten < 100 || res.FinalBookmark == "" {
				t.Errorf("result %+v: want D1's queries (= %d statements), rows written and final bookmark", res, res.Statements)
			}
			equalContents(t, contents(t, w.dbPath(t, res.DatabaseID)), contents(t, w.dbPath(t, w.src.UUID)))
		})
	}
}

// importRequests are the requests that could have changed D1.
func importRequests(emu *d1emu.Server) []string {
	var out []string
	for _, r := range emu.Requests() {
		if r.Endpoint == d1emu.EndpointImport || r.Endpoint == d1emu.EndpointUpload || r.Endpoint == d1emu.EndpointCreate {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

func TestCorruptBackupRefusedBeforeAnyWrite(t *testing.T) {
	t.Parallel()
	for _, compression := range []string{"gzip", "zstd", "none"} {
		t.Run(compression, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			sum := w.backup(t, compression)
			path := filepath.Join(w.store.String(), filepath.FromSlash(sum.Key))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x20
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			empty, err := w.emu.CreateDatabase("empty", "")
			if err != nil {
				t.Fatal(err)
			}
			w.emu.ResetRequests()
			for _, target := range []restore.Target{{Create: "new"}, {Database: empty.UUID}} {
				_, err := restore.ToD1(context.Background(), w.api, restore.Source{Store: w.store, Key: sum.Key}, target, w.opts())
				var ie *restore.IntegrityError
				if !errors.As(err, &ie) {
					t.Fatalf("%+v: got %v, want an IntegrityError", target, err)
				}
			}
			if got := importRequests(w.emu); len(got) != 0 {
				t.Errorf("requests that reach D1's write path: %v, want none", got)
			}
			if got, want := len(w.emu.Databases()), 2; got != want {
				t.Errorf("databases: %d, want %d (nothing created)", got, want)
			}
			if ents, _ := os.ReadDir(w.dir); len(ents) != 1 {
				t.Errorf("temporary files left: %v", ents)
			}
		})
	}
}

func TestTargetChecks(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sum := w.backup(t, "gzip")
	src := restore.Source{Store: w.store, Key: sum.Key}
	before := contents(t, w.dbPath(t, w.src.UUID))
	ctx := context.Background()

	w.emu.ResetRequests()
	_, err := restore.ToD1(ctx, w.api, src, restore.Target{Database: "shop"}, w.opts())
	var ne *restore.TargetNotEmptyError
	if !errors.As(err, &ne) || ne.Tables != 3 {
		t.Errorf("non-empty target: got %v, want TargetNotEmptyError with 3 tables", err)
	}
	_, err = restore.ToD1(ctx, w.api, src, restore.Target{Create: "shop"}, w.opts())
	var te *restore.TargetError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("create over an existing name: got %v, want TargetError", err)
	}
	if got := importRequests(w.emu); len(got) != 0 {
		t.Errorf("refused restores reached D1's write path: %v", got)
	}

	// --force reaches D1, whose import fails on the existing tables and
	// rolls back: the database is as it was.
	_, err = restore.ToD1(ctx, w.api, src, restore.Target{Database: w.src.UUID, Force: true}, w.opts())
	var fe *d1.ImportFailedError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("forced import over the same tables: got %v, want ImportFailedError (table already exists)", err)
	}
	equalContents(t, contents(t, w.dbPath(t, w.src.UUID)), before)

	// An existing empty database is a fine target.
	if _, err := w.emu.CreateDatabase("blank", ""); err != nil {
		t.Fatal(err)
	}
	res, err := restore.ToD1(ctx, w.api, src, restore.Target{Database: "blank"}, w.opts())
	if err != nil || res.Created {
		t.Fatalf("into an empty database: %+v, %v", res, err)
	}
	equalContents(t, contents(t, w.dbPath(t, "blank")), before)
}

func TestToSQLite(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sum := w.backup(t, "zstd")
	src := restore.Source{Store: w.store, Key: sum.Key}
	out := filepath.Join(w.dir, "shop.sqlite")
	ctx := context.Background()
	res, err := restore.ToSQLite(ctx, src, out, false, w.opts())
	if err != nil {
		t.Fatal(err)
	}
	if res.SQLitePath != out || res.NumQueries != res.Statements || res.RowsWritten == 0 {
		t.Errorf("result %+v", res)
	}
	want := contents(t, w.dbPath(t, w.src.UUID))
	equalContents(t, contents(t, out), want)

	_, err = restore.ToSQLite(ctx, src, out, false, w.opts())
	var te *restore.TargetError
	if !errors.As(err, &te) {
		t.Errorf("existing file without force: got %v, want TargetError", err)
	}
	if _, err := restore.ToSQLite(ctx, src, out, true, w.opts()); err != nil {
		t.Errorf("existing file with force: %v", err)
	}
	equalContents(t, contents(t, out), want)
	if ents, _ := filepath.Glob(filepath.Join(w.dir, "*")); len(ents) != 2 {
		t.Errorf("files left: %v, want backups/ and shop.sqlite", ents)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sum := w.backup(t, "none")
	ctx := context.Background()
	src := restore.Source{Store: w.store, Key: sum.Key}

	rep, err := restore.Verify(ctx, src, w.opts())
	if err != nil {
		t.Fatal(err)
	}
	var counts []string
	for _, tc := range rep.Tables {
		counts = append(counts, tc.Name+"="+itoa(tc.Rows))
	}
	db, _ := sql.Open("sqlite", "file:"+w.dbPath(t, w.src.UUID)+"?mode=ro")
	defer db.Close()
	wantCounts := query(t, db, `SELECT 'customers='||(SELECT count(*) FROM customers) UNION ALL SELECT 'order_items='||(SELECT count(*) FROM order_items) UNION ALL SELECT 'orders='||(SELECT count(*) FROM orders)`)
	if got, want := strings.Join(counts, " "), strings.Join(wantCounts, " "); got != want || !rep.OK {
		t.Errorf("counts %s, want %s (ok=%v)", got, want, rep.OK)
	}
	tables, schema, err := restore.Inspect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SchemaSHA256 != schema || len(tables) != len(rep.Tables) {
		t.Errorf("schema hash %s, want the source database's %s", rep.SchemaSHA256, schema)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Error(err)
	}

	// A tampered dump: same length, one changed row.
	path := filepath.Join(w.store.String(), filepath.FromSlash(sum.Key))
	orig, _ := os.ReadFile(path)
	tampered := bytes.Replace(orig, []byte("'paid'"), []byte("'PAID'"), 1)
	if bytes.Equal(orig, tampered) {
		t.Fatal("nothing to tamper with")
	}
	os.WriteFile(path, tampered, 0o644)
	rep, err = restore.Verify(ctx, src, w.opts())
	if got, want := failed(rep, err), restore.CheckStoredSHA256; got != want {
		t.Errorf("tampered dump: failed check %q, want %q (%v)", got, want, err)
	}
	os.WriteFile(path, orig, 0o644)

	// A tampered manifest: its SQL hash edited.
	mpath := path + backup.ManifestSuffix
	morig, _ := os.ReadFile(mpath)
	sha := sha256.Sum256([]byte("something else"))
	os.WriteFile(mpath, bytes.Replace(morig, []byte(sum.SQLSHA256), []byte(hex.EncodeToString(sha[:])), -1), 0o644)
	rep, err = restore.Verify(ctx, src, w.opts())
	if got := failed(rep, err); got != restore.CheckSQLSHA256 && got != restore.CheckStoredSHA256 {
		t.Errorf("tampered manifest: failed check %q, want a hash check (%v)", got, err)
	}
	os.WriteFile(mpath, []byte("{not json"), 0o644)
	rep, err = restore.Verify(ctx, src, w.opts())
	if got, want := failed(rep, err), restore.CheckManifest; got != want {
		t.Errorf("garbled manifest: failed check %q, want %q (%v)", got, want, err)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// failed returns the first failed check's name after checking that Verify
// failed the way it promises.
func failed(rep *restore.Report, err error) string {
	var ve *restore.VerificationError
	if !errors.As(err, &ve) || rep == nil || rep.OK {
		return "no VerificationError: " + errString(err)
	}
	for _, c := range rep.Checks {
		if !c.OK {
			return c.Name
		}
	}
	return "none"
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// putBackup stores sql uncompressed with a correct manifest, as the backup
// step would have, under key (see backupKey).
func putBackup(t *testing.T, st store.Store, key, sql string) {
	t.Helper()
	putObject(t, st, key, "none", []byte(sql), int64(len(sql)), []byte(sql))
}

func TestImportLimitsReportedBeforeUpload(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, tt := range []struct {
		name, sql, want string
	}{
		{"transaction", "BEGIN TRANSACTION;\nCREATE TABLE t (v);\nCOMMIT;\n", `statement 1 (at byte 0) is transaction control ("BEGIN TRANSACTION;")`},
		{"savepoint", "CREATE TABLE t (v);\n/* c */ SAVEPOINT x;\nINSERT INTO t VALUES(1);\nRELEASE x;\n", `statement 2 (at byte 20) is transaction control ("/* c */ SAVEPOINT x;")`},
	} {
		key := testKey(tt.name, "none")
		putBackup(t, w.store, key, tt.sql)
		w.emu.ResetRequests()
		_, err := restore.ToD1(context.Background(), w.api, restore.Source{Store: w.store, Key: key}, restore.Target{Create: "t"}, w.opts())
		var le *restore.LimitError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want a LimitError saying %q", tt.name, err, tt.want)
		}
		if got := importRequests(w.emu); len(got) != 0 {
			t.Errorf("%s: requests on D1's write path: %v", tt.name, got)
		}
		// A local SQLite file takes what D1 would not.
		out := filepath.Join(w.dir, tt.name+".sqlite")
		if _, err := restore.ToSQLite(context.Background(), restore.Source{Store: w.store, Key: key}, out, false, w.opts()); err != nil {
			t.Errorf("%s: into SQLite: %v", tt.name, err)
		}
		rep, err := restore.Verify(context.Background(), restore.Source{Store: w.store, Key: key}, w.opts())
		if err != nil || len(rep.Warnings) == 0 {
			t.Errorf("%s: verify: %v, warnings %v; want OK with a warning", tt.name, err, rep.Warnings)
		}
	}
}
