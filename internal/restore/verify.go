package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Report is the outcome of Verify. It marshals to JSON for people and
// workflows alike.
type Report struct {
	Key          string `json:"key"`
	ManifestKey  string `json:"manifest_key"`
	DatabaseID   string `json:"database_id,omitempty"`
	DatabaseName string `json:"database_name,omitempty"`
	Bookmark     string `json:"bookmark,omitempty"`
	Compression  string `json:"compression,omitempty"`
	StoredBytes  int64  `json:"stored_bytes"`
	StoredSHA256 string `json:"stored_sha256,omitempty"`
	SQLBytes     int64  `json:"sql_bytes"`
	SQLSHA256    string `json:"sql_sha256,omitempty"`
	Statements   int64  `json:"statements"`
	// SplitRows counts the rows whose INSERT is over D1's statement limit;
	// restoring into D1 rewrites each into an INSERT and UPDATEs under it.
	SplitRows int64 `json:"split_rows"`
	// Tables are the restored tables with their row counts, by name.
	Tables []TableCount `json:"tables"`
	// SchemaSHA256 is Inspect's schema hash of the restored database.
	SchemaSHA256 string `json:"schema_sha256,omitempty"`
	// Checks are in the order they ran; verification stops at the first
	// failed hash check, since nothing after it could be trusted.
	Checks []Check `json:"checks"`
	// Warnings do not fail verification: what would make D1 refuse to
	// import the dump (restore it into SQLite instead): its size,
	// transaction statements, rows over D1's limit that cannot be split.
	Warnings []string `json:"warnings,omitempty"`
	OK       bool     `json:"ok"`
}

// Check is one verification check.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Check names.
const (
	CheckManifest     = "manifest"
	CheckStoredSHA256 = "stored_sha256"
	CheckSQLSHA256    = "sql_sha256"
	CheckLoad         = "load"
	CheckIntegrity    = "integrity_check"
	CheckForeignKeys  = "foreign_key_check"
	// CheckManifestCounts compares the row counts and schema hash with an
	// earlier verification recorded in the manifest.
	CheckManifestCounts = "manifest_counts"
	checkSQL            = "sql"
	verifyScratchPrefix = "d1backup-verify-*.sqlite"
)

// Verify proves a backup restores: its stored object and SQL match the
// manifest's sizes and SHA-256, the SQL loads into a scratch SQLite
// database, which passes PRAGMA integrity_check and foreign_key_check. The
// report lists per-table row counts and the schema hash. A failed check
// returns the report and a *VerificationError; an error reaching the store
// returns a nil report.
func Verify(ctx context.Context, src Source, opts Options) (*Report, error) {
	dumpKey, manifestKey := src.Keys()
	rep := &Report{Key: dumpKey, ManifestKey: manifestKey, Tables: []TableCount{}, Checks: []Check{}}
	d, err := Fetch(ctx, src, opts)
	var ie *IntegrityError
	switch {
	case errors.As(err, &ie):
		// Say which checks passed before the failure.
		order := []string{CheckManifest, CheckStoredSHA256, CheckSQLSHA256, checkSQL}
		for _, name := range order {
			if name == ie.Check {
				rep.Checks = append(rep.Checks, Check{Name: name, Detail: ie.Msg})
				break
			}
			rep.Checks = append(rep.Checks, Check{Name: name, OK: true})
		}
		return rep, &VerificationError{Key: dumpKey, Problems: []string{ie.Check + ": " + ie.Msg}}
	case err != nil:
		return nil, err
	}
	defer d.Close()
	m := d.Manifest
	rep.DatabaseID, rep.DatabaseName, rep.Bookmark, rep.Compression = m.DatabaseID, m.DatabaseName, m.Bookmark, m.Compression
	rep.StoredBytes, rep.StoredSHA256, rep.SQLBytes, rep.SQLSHA256 = m.StoredBytes, m.StoredSHA256, d.Size, d.SHA256
	rep.Statements = d.Statements
	rep.Warnings = d.Limits
	rep.Checks = append(rep.Checks,
		Check{Name: CheckManifest, OK: true},
		Check{Name: CheckStoredSHA256, OK: true, Detail: m.StoredSHA256},
		Check{Name: CheckSQLSHA256, OK: true, Detail: m.SQLSHA256})

	scratch, err := os.CreateTemp(opts.TempDir, verifyScratchPrefix)
	if err != nil {
		return nil, fmt.Errorf("restore: scratch database: %w", err)
	}
	scratch.Close()
	defer os.Remove(scratch.Name())
	defer os.Remove(scratch.Name() + "-journal")
	db, err := openSQLite(scratch.Name())
	if err != nil {
		return nil, fmt.Errorf("restore: scratch database: %w", err)
	}
	defer db.Close()
	var problems []string
	fail := func(name string, detail string) {
		rep.Checks = append(rep.Checks, Check{Name: name, Detail: detail})
		problems = append(problems, name+": "+detail)
	}
	// Rows over D1's statement limit are rewritten as a D1 restore would
	// (and checked to read back identical), to count them.
	st, err := load(ctx, db, d.Path, scratchBytes(d.Size), io.Discard)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("restore: verify: %w", ctx.Err())
		}
		fail(CheckLoad, err.Error())
		return rep, &VerificationError{Key: dumpKey, Problems: problems}
	}
	rep.SplitRows = st.SplitRows
	rep.Warnings = append(rep.Warnings, st.Unsplit...)
	rep.Checks = append(rep.Checks, Check{Name: CheckLoad, OK: true, Detail: fmt.Sprintf("%d statements", d.Statements)})
	integ, fk, err := integrity(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("restore: verify: %w", err)
	}
	if integ != "" {
		fail(CheckIntegrity, integ)
	} else {
		rep.Checks = append(rep.Checks, Check{Name: CheckIntegrity, OK: true})
	}
	if fk != "" {
		fail(CheckForeignKeys, fk)
	} else {
		rep.Checks = append(rep.Checks, Check{Name: CheckForeignKeys, OK: true})
	}
	if rep.Tables, rep.SchemaSHA256, err = Inspect(ctx, db); err != nil {
		return nil, fmt.Errorf("restore: verify: %w", err)
	}
	if pv := m.Verification; pv != nil && pv.OK {
		if diff := compareVerification(pv.Tables, pv.SchemaHash, rep.Tables, rep.SchemaSHA256); diff != "" {
			fail(CheckManifestCounts, diff)
		} else {
			rep.Checks = append(rep.Checks, Check{Name: CheckManifestCounts, OK: true})
		}
	}
	if len(problems) > 0 {
		return rep, &VerificationError{Key: dumpKey, Problems: problems}
	}
	rep.OK = true
	return rep, nil
}

// compareVerification explains how counts and a schema hash differ from an
// earlier verification's; "" when they agree.
func compareVerification(want map[string]int64, wantSchema string, got []TableCount, gotSchema string) string {
	var diffs []string
	if wantSchema != "" && wantSchema != gotSchema {
		diffs = append(diffs, fmt.Sprintf("schema hash %s, the manifest recorded %s", gotSchema, wantSchema))
	}
	seen := map[string]bool{}
	for _, t := range got {
		seen[t.Name] = true
		if w, ok := want[t.Name]; want != nil && (!ok || w != t.Rows) {
			diffs = append(diffs, fmt.Sprintf("table %s has %d rows, the manifest recorded %d", t.Name, t.Rows, w))
		}
	}
	for name, w := range want {
		if !seen[name] {
			diffs = append(diffs, fmt.Sprintf("table %s (%d rows in the manifest) is missing", name, w))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}
