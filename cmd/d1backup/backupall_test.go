package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// several is `backup --json` with several databases.
type several struct {
	Databases []struct {
		DatabaseID   string `json:"database_id"`
		DatabaseName string `json:"database_name"`
		Status       string `json:"status"`
		Backup       *struct {
			Key       string `json:"key"`
			SQLSHA256 string `json:"sql_sha256"`
		} `json:"backup"`
		Error *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"databases"`
	Stored, AlreadyStored, Failed int
}

func (s several) names() string {
	var out []string
	for _, d := range s.Databases {
		out = append(out, d.DatabaseName+"="+d.Status)
	}
	return strings.Join(out, " ")
}

func TestBackupSeveral(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	dumps := map[string][]byte{"notes": w.dump}
	for _, name := range []string{"shop", "test-a", "test-b"} {
		db := w.emu.MustCreate(t, name, "CREATE TABLE t (x); INSERT INTO t VALUES ('"+name+"');")
		dumps[name] = w.emu.MustDump(t, db.UUID)
	}

	r := w.run(t, w.env(), "backup", "--all", "--exclude", "test-*", "--json")
	if r.code != 0 {
		t.Fatalf("--all: exit %d\n%s", r.code, r.stderr)
	}
	golden(t, "json/backup-several.shape", shape(t, r.stdout))
	s := decode[several](t, r.stdout)
	if got, want := s.names(), "notes=stored shop=stored"; got != want {
		t.Errorf("--all --exclude test-*: %s, want %s", got, want)
	}
	for _, d := range s.Databases {
		stored, err := os.ReadFile(filepath.Join(w.dir, "d1-backups", filepath.FromSlash(d.Backup.Key)))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sha(gunzip(t, stored)), sha(dumps[d.DatabaseName]); got != want || d.Backup.SQLSHA256 != want {
			t.Errorf("%s: stored SQL sha256 %s (reported %s), want %s", d.DatabaseName, got, d.Backup.SQLSHA256, want)
		}
	}
	for _, want := range []string{"backing up 2 databases into d1-backups, 2 at a time", "notes: exporting; D1 answers no queries to notes", "shop: stored "} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	// A rerun stores nothing new, and says so in the table.
	r = w.run(t, w.env(), "backup", "--all", "--exclude", "test-*")
	if r.code != 0 || len(regexp.MustCompile(`(?m)^(notes|shop) +already stored +[0-9a-f]{8} `).FindAllString(r.stdout, -1)) != 2 ||
		!strings.Contains(r.stdout, "2 databases: 0 stored, 2 already stored, 0 failed") {
		t.Errorf("rerun: exit %d\n%s", r.code, r.stdout)
	}

	// Repeatable --database, and D1BACKUP_DATABASES when no flag names any.
	r = w.run(t, w.env(), "backup", "--database", "test-a", "--database", w.db.UUID, "--json")
	if got, want := decode[several](t, r.stdout).names(), "notes=already_stored test-a=stored"; r.code != 0 || got != want {
		t.Errorf("two --database: exit %d, %s, want %s\n%s", r.code, got, want, r.stderr)
	}
	r = w.run(t, w.env("D1BACKUP_DATABASES=test-b,shop"), "backup", "--json")
	if got, want := decode[several](t, r.stdout).names(), "shop=already_stored test-b=stored"; r.code != 0 || got != want {
		t.Errorf("D1BACKUP_DATABASES: exit %d, %s, want %s\n%s", r.code, got, want, r.stderr)
	}

	// Nothing matches: an error, not a quiet success.
	r = w.run(t, w.env(), "backup", "--all", "--include", "zzz*")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "no database to back up") {
		t.Errorf("--include zzz*: exit %d, stderr %q", r.code, r.stderr)
	}
	// A named database that does not exist fails before any export.
	before := len(w.emu.Requests())
	r = w.run(t, w.env(), "backup", "--database", "notes", "--database", "nope")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), `"nope" not found`) {
		t.Errorf("--database nope: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, req := range w.emu.Requests()[before:] {
		if req.Endpoint == d1emu.EndpointExport {
			t.Errorf("an export started although a named database does not exist")
		}
	}
}

// TestBackupSeveralOneFails: one database's failure leaves the others
// backed up, shows in the table and the JSON, and exits 1 naming it.
func TestBackupSeveralOneFails(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	bad := w.emu.MustCreate(t, "broken", "CREATE TABLE t (x);")
	w.emu.MustCreate(t, "shop", "CREATE TABLE t (x);")
	w.emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointAny, Kind: d1emu.FaultExportError, Database: bad.UUID, Times: 10})

	// Under method export: auto would read the database through the query
	// API instead, as D1's virtual-table refusal asks for.
	r := w.run(t, w.env("D1BACKUP_METHOD=export"), "backup", "--all", "--concurrency", "1")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if got, want := lastLine(r.stderr), "d1backup backup: 1 of 3 databases failed: broken"; got != want {
		t.Errorf("last stderr line %q, want %q", got, want)
	}
	if !regexp.MustCompile(`(?m)^broken +FAILED +- `).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^  broken: export of database broken .*virtual tables`).MatchString(r.stdout) ||
		len(regexp.MustCompile(`(?m)^(notes|shop) +stored `).FindAllString(r.stdout, -1)) != 2 {
		t.Errorf("summary table:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "3 databases: 2 stored, 0 already stored, 1 failed") {
		t.Errorf("summary line missing:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "broken: FAILED: ") {
		t.Errorf("no failure line for broken on stderr:\n%s", r.stderr)
	}
	if files, _ := filepath.Glob(filepath.Join(w.dir, "d1-backups", bad.UUID, "*")); len(files) > 0 {
		t.Errorf("the failed database left files: %v", files)
	}

	w.emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointAny, Kind: d1emu.FaultExportError, Database: bad.UUID, Times: 10})
	r = w.run(t, w.env("D1BACKUP_METHOD=export"), "backup", "--all", "--json")
	s := decode[several](t, r.stdout)
	if r.code != 1 || s.Failed != 1 || s.names() != "broken=failed notes=already_stored shop=already_stored" {
		t.Fatalf("--json: exit %d, %+v", r.code, s)
	}
	if e := s.Databases[0].Error; e == nil || e.Type != "ExportFailedError" || !strings.Contains(e.Message, "virtual tables") || s.Databases[0].Backup != nil {
		t.Errorf("failed database's JSON: %+v", s.Databases[0])
	}
}

// TestBackupProgress: while D1 exports, stderr says so (and that the
// database is blocked) once the export has started, then how long it took
// and how many polls; nothing is printed for a step that never started,
// and no rate is claimed for a transfer too short to measure.
func TestBackupProgress(t *testing.T) {
	w := newWorld(t, d1emu.Options{ExportPolls: 2})
	r := w.run(t, w.env(), "backup", "--database", "notes", "--poll-interval", "1s")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 2 || lines[0] != "notes: exporting; D1 answers no queries to notes until the export completes" ||
		!regexp.MustCompile(`^notes: export complete after [0-9.]+s, 2 polls; D1 serves the database again; storing the dump$`).MatchString(lines[1]) {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if !regexp.MustCompile(`^notes: stored 225 B of SQL as [0-9]+ B gzip in [0-9.]+m?s \(backup [0-9a-f]{8}\)\n`).MatchString(r.stdout) {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "/s") {
		t.Errorf("a rate for a 225-byte transfer:\n%s%s", r.stdout, r.stderr)
	}

	r = w.run(t, w.env(), "backup", "--database", "nope")
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "exporting") {
		t.Errorf("unknown database: exit %d, stderr %q, want only the error", r.code, r.stderr)
	}
}
