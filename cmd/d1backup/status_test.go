package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
)

type statusDoc struct {
	AccountListed bool `json:"account_listed"`
	OK            bool `json:"ok"`
	Databases     []struct {
		DatabaseName string `json:"database_name"`
		State        string `json:"state"`
		Reason       string `json:"reason"`
		Expected     bool   `json:"expected"`
		Backups      int    `json:"backups"`
		LastGood     *struct {
			ID           string `json:"id"`
			Method       string `json:"method"`
			Encrypted    bool   `json:"encrypted"`
			Compression  string `json:"compression"`
			Verification *struct {
				OK bool `json:"ok"`
			} `json:"verification"`
		} `json:"last_good"`
	} `json:"databases"`
}

// rows renders each database as name=STATE[,verified][,encrypted][,unexpected].
func (s statusDoc) rows() string {
	var out []string
	for _, d := range s.Databases {
		r := d.DatabaseName + "=" + d.State
		if lg := d.LastGood; lg != nil {
			if lg.Verification != nil && lg.Verification.OK {
				r += ",verified"
			}
			if lg.Encrypted {
				r += ",encrypted"
			}
			if lg.Method != "export" {
				r += ",method " + lg.Method
			}
		}
		if !d.Expected {
			r += ",unexpected"
		}
		out = append(out, r)
	}
	return strings.Join(out, " ")
}

// age the manifest of key (relative to ./d1-backups) by d.
func ageManifest(t *testing.T, root, key string, d time.Duration) {
	t.Helper()
	path := filepath.Join(root, filepath.FromSlash(key)) + ".manifest.json"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"export_started_at", "export_completed_at", "stored_at"} {
		ts, _ := time.Parse(time.RFC3339Nano, m[f].(string))
		m[f] = ts.Add(-d)
	}
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStatus: an account with fresh (verified), stale, never backed up,
// unverified and encrypted databases, one whose newest backup failed
// verification, and backups of a database no longer in the account.
func TestStatus(t *testing.T) {
	w := newWorld(t, d1emu.Options{})
	root := filepath.Join(w.dir, "d1-backups")
	for _, name := range []string{"fresh", "stale", "never", "unverified", "encrypted", "broken"} {
		w.emu.MustCreate(t, name, "CREATE TABLE t (x); INSERT INTO t VALUES ('"+name+"');")
	}
	backupOf := func(env []string, name string) string {
		t.Helper()
		r := w.run(t, env, "backup", "--database", name, "--json")
		var sum struct {
			Key string `json:"key"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &sum); r.code != 0 || err != nil {
			t.Fatalf("backup %s: exit %d\n%s", name, r.code, r.stderr)
		}
		return sum.Key
	}
	backupOf(w.env(), "fresh")
	if r := w.run(t, w.env(), "verify", "fresh@latest"); r.code != 0 {
		t.Fatalf("verify fresh: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ageManifest(t, root, backupOf(w.env(), "stale"), 72*time.Hour)
	backupOf(w.env(), "unverified")
	id, _ := age.GenerateX25519Identity()
	backupOf(w.env("D1BACKUP_AGE_RECIPIENTS="+id.Recipient().String()), "encrypted")
	ageManifest(t, root, backupOf(w.env(), "broken"), 2*time.Hour)
	if err := w.emu.Exec(w.db.UUID, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	w.emu.Exec(mustUUID(t, w, "broken"), "INSERT INTO t VALUES ('more')") //nolint:errcheck
	brokenKey := backupOf(w.env(), "broken")
	stored := filepath.Join(root, filepath.FromSlash(brokenKey))
	b, _ := os.ReadFile(stored)
	b[len(b)/2] ^= 1
	os.WriteFile(stored, b, 0o644) //nolint:errcheck
	if r := w.run(t, w.env(), "verify", "broken@latest"); r.code != 1 {
		t.Fatalf("verify of a damaged backup: exit %d", r.code)
	}
	// Another account's database, backed up into the same folder.
	other := d1emutest.Start(t, d1emu.Options{})
	other.MustCreate(t, "gone", "CREATE TABLE t (x);")
	if r := w.run(t, []string{"PATH=" + os.Getenv("PATH"), "CLOUDFLARE_ACCOUNT_ID=" + other.AccountID(), "CLOUDFLARE_API_TOKEN=" + other.Token(),
		"CLOUDFLARE_API_BASE_URL=" + other.BaseURL}, "backup", "--database", "gone"); r.code != 0 {
		t.Fatalf("backup gone: exit %d\n%s", r.code, r.stderr)
	}

	r := w.run(t, w.env(), "status", "--json")
	if r.code != 1 {
		t.Errorf("status --json: exit %d, want 1 (stale, never, failed)\n%s", r.code, r.stderr)
	}
	golden(t, "json/status.shape", shape(t, r.stdout))
	s := decode[statusDoc](t, r.stdout)
	want := "broken=FAILED encrypted=OK,encrypted fresh=OK,verified gone=OK,unexpected never=NEVER notes=NEVER stale=STALE unverified=OK"
	if got := s.rows(); got != want || !s.AccountListed || s.OK {
		t.Errorf("status\n got %s (account listed %v, ok %v)\nwant %s", got, s.AccountListed, s.OK, want)
	}
	if got, want := lastLine(r.stderr), "d1backup status: 4 of 7 databases need attention: broken (FAILED), never (NEVER), notes (NEVER), stale (STALE)"; got != want {
		t.Errorf("stderr %q\nwant %q", got, want)
	}
	for _, d := range s.Databases {
		if d.DatabaseName == "broken" && (!strings.Contains(d.Reason, "failed verification") || d.Backups != 2) {
			t.Errorf("broken: reason %q, %d backups; want the failed verification and 2 backups", d.Reason, d.Backups)
		}
	}

	// The table a person reads: every database, its state, the reasons.
	r = w.run(t, w.env(), "status")
	for _, re := range []string{
		`(?m)^DATABASE +STATE +LAST GOOD +SIZE +FORMAT +VERIFIED +METHOD +KEPT$`,
		`(?m)^fresh +OK +[0-9]+s ago +[0-9.]+ B +gzip +[0-9]+s ago +export +1$`,
		`(?m)^encrypted +OK .* gzip\+age +no +export +1$`,
		`(?m)^stale +STALE +3d ago `,
		`(?m)^never +NEVER +- +- +- +- +- +0$`,
		`(?m)^gone +OK\* `,
		`(?m)^7 databases: 3 OK, 1 STALE, 1 FAILED, 2 NEVER \(stale after 36h, in d1-backups\)$`,
		`(?m)^  stale: newest good backup is 72h old, over the 36h threshold$`,
		`(?m)^  gone \(\* not in the account's selected databases: not counted\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("status output does not match %s:\n%s", re, r.stdout)
		}
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if len(line) > 100 {
			t.Errorf("line over 100 columns: %q", line)
		}
	}

	// Only the healthy ones selected: exit 0.
	r = w.run(t, w.env(), "status", "--include", "fresh", "--include", "*crypted", "--include", "unverified")
	if r.code != 0 {
		t.Errorf("status of healthy databases: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A longer threshold makes stale OK; the never-backed-up stay NEVER.
	r = w.run(t, w.env(), "status", "--stale-after", "100", "--exclude", "n*", "--exclude", "broken", "--json")
	if s := decode[statusDoc](t, r.stdout); r.code != 0 || !strings.Contains(s.rows(), "stale=OK") {
		t.Errorf("--stale-after 100: exit %d, %s", r.code, s.rows())
	}
	// Without D1 credentials only the destination is known.
	r = w.run(t, w.env("CLOUDFLARE_API_TOKEN="), "status", "--json")
	if s := decode[statusDoc](t, r.stdout); r.code != 1 || s.AccountListed || strings.Contains(s.rows(), "NEVER") || !strings.Contains(r.stderr, "only databases with backups") {
		t.Errorf("no credentials: exit %d, %s\n%s", r.code, s.rows(), r.stderr)
	}
}

func mustUUID(t *testing.T, w *world, name string) string {
	t.Helper()
	for _, d := range w.emu.Databases() {
		if d.Name == name {
			return d.UUID
		}
	}
	t.Fatalf("no database %s", name)
	return ""
}
