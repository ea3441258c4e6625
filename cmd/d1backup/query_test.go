package main_test

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/testenv"
)

// TestBackupFTS5: a database D1 cannot export backs up by default (method
// auto) through the query API; the output says it blocked nobody, that the
// dump is consistent and what it could not hold; the backup restores into
// SQLite and answers MATCH.
func TestBackupFTS5(t *testing.T) {
	w := newWorld(t, d1emu.Options{ExportPolls: 1})
	w.emu.MustCreateFTS5(t, "search")
	r := w.run(t, w.env(), "backup", "--database", "search")
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	for _, want := range []string{"through D1's query API; this blocks nobody"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, want := range []string{"read through the query API (blocked nobody); consistent", "warning: articles_cl: contentless FTS5 table"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if s := secretsIn(r, append(urlSecrets, w.emu.Token())...); len(s) > 0 {
		t.Errorf("output leaks %v", s)
	}
	r = w.run(t, w.env(), "backup", "--database", "search", "--json")
	var sum struct {
		Key            string   `json:"key"`
		Method         string   `json:"method"`
		Consistent     *bool    `json:"consistent"`
		Warnings       []string `json:"warnings"`
		AlreadyExisted bool     `json:"already_existed"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || r.code != 0 {
		t.Fatalf("--json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if sum.Method != "query" || sum.Consistent == nil || !*sum.Consistent || len(sum.Warnings) != 1 || !sum.AlreadyExisted {
		t.Errorf("rerun summary %+v, want the consistent query backup, already stored", sum)
	}
	out := filepath.Join(w.dir, "search.sqlite")
	r = w.run(t, w.env(), "restore", "--from", filepath.Join(w.dir, "d1-backups", filepath.FromSlash(sum.Key)), "--to-sqlite", out)
	if r.code != 0 {
		t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
	}
	db, err := sql.Open("sqlite", out)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var title string
	if err := db.QueryRow(`SELECT title FROM articles_fts WHERE articles_fts MATCH 'semicolon'`).Scan(&title); err != nil || title != "O'Brien's notes" {
		t.Errorf("restored MATCH = %q (%v), want O'Brien's notes", title, err)
	}
}

// TestMethodFlag: --method query reads a database D1 could export through
// the query API, and says so before it starts.
func TestMethodFlag(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	r := w.run(t, w.env(), "backup", "--database", "notes", "--method", "query")
	if r.code != 0 || !strings.Contains(r.stderr, "notes: reading the database through D1's query API; this blocks nobody") {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	for _, req := range w.emu.Requests() {
		if req.Endpoint == d1emu.EndpointExport {
			t.Errorf("--method query started an export")
		}
	}
	r = w.run(t, w.env("D1BACKUP_METHOD=exprt"), "backup", "--database", "notes")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), `D1BACKUP_METHOD="exprt": must be one of export, query, auto`) {
		t.Errorf("bad method: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestResidencyCLI: an EU database is refused for a bucket outside the EU
// with one line saying what to do; --allow-cross-jurisdiction lets it
// through; a local folder is the user's own choice.
func TestResidencyCLI(t *testing.T) {
	s := testenv.RequireS3(t)
	w := newWorld(t, d1emu.Options{})
	w.emu.MustCreate(t, "eu-notes", seed, d1emu.WithJurisdiction("eu"))
	env := w.env(s.Env(s.NewBucket(t))...)
	r := w.run(t, env, "backup", "--database", "eu-notes")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "is in the eu jurisdiction, but r2://") || !strings.Contains(lastLine(r.stderr), "D1BACKUP_ALLOW_CROSS_JURISDICTION=true") {
		t.Errorf("EU database into a default bucket: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, req := range w.emu.Requests() {
		if req.Endpoint == d1emu.EndpointExport {
			t.Errorf("an export was started for a backup that is refused")
		}
	}
	if r := w.run(t, env, "backup", "--database", "eu-notes", "--allow-cross-jurisdiction"); r.code != 0 {
		t.Errorf("--allow-cross-jurisdiction: exit %d\n%s", r.code, r.stderr)
	}
	if r := w.run(t, env, "backup", "--database", "eu-notes", "--dest", "local-backups"); r.code != 0 {
		t.Errorf("into a folder: exit %d\n%s", r.code, r.stderr)
	}
	if s := secretsIn(r, append(urlSecrets, w.emu.Token(), s.SecretAccessKey)...); len(s) > 0 {
		t.Errorf("output leaks %v", s)
	}
}
