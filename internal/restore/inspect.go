package restore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// TableCount is one table's row count.
type TableCount struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
}

// userObjects filters out SQLite's and D1's internal objects.
const userObjects = `name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_cf\_%' ESCAPE '\'`

// Inspect reads what a SQLite database holds: per-table row counts (in
// name order) and the schema hash, SHA-256 over the sorted lines
// type|name|tbl_name|sql of sqlite_schema, SQLite's and D1's internal
// objects (sqlite_*, _cf_*) left out. Two databases with the same schema
// have the same hash whatever their data.
func Inspect(ctx context.Context, db *sql.DB) (tables []TableCount, schemaSHA256 string, err error) {
	rows, err := db.QueryContext(ctx, `SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema WHERE `+userObjects)
	if err != nil {
		return nil, "", fmt.Errorf("read schema: %w", err)
	}
	var lines, names []string
	for rows.Next() {
		var typ, name, tbl, text string
		if err := rows.Scan(&typ, &name, &tbl, &text); err != nil {
			rows.Close()
			return nil, "", fmt.Errorf("read schema: %w", err)
		}
		lines = append(lines, typ+"|"+name+"|"+tbl+"|"+text)
		if typ == "table" && !strings.HasPrefix(strings.ToUpper(text), "CREATE VIRTUAL TABLE") {
			names = append(names, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("read schema: %w", err)
	}
	sort.Strings(lines)
	sort.Strings(names)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	tables = []TableCount{}
	for _, n := range names {
		var c int64
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "`+strings.ReplaceAll(n, `"`, `""`)+`"`).Scan(&c); err != nil {
			return nil, "", fmt.Errorf("count rows of %s: %w", n, err)
		}
		tables = append(tables, TableCount{Name: n, Rows: c})
	}
	return tables, hex.EncodeToString(h.Sum(nil)), nil
}

// integrity runs PRAGMA integrity_check and foreign_key_check; each returns
// "" when clean, else a summary of the first findings.
func integrity(ctx context.Context, db *sql.DB) (integrityProblem, fkProblem string, err error) {
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return "", "", err
	}
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			rows.Close()
			return "", "", err
		}
		if m != "ok" && len(msgs) < 5 {
			msgs = append(msgs, m)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", "", err
	}
	integrityProblem = strings.Join(msgs, "; ")

	rows, err = db.QueryContext(ctx, `SELECT "table", coalesce(rowid, 0), parent, fkid FROM pragma_foreign_key_check`)
	if err != nil {
		return "", "", err
	}
	defer rows.Close()
	var fks []string
	n := 0
	for rows.Next() {
		var table, parent string
		var rowid, fkid int64
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			return "", "", err
		}
		n++
		if len(fks) < 5 {
			fks = append(fks, fmt.Sprintf("%s row %d references a missing row of %s", table, rowid, parent))
		}
	}
	if err := rows.Err(); err != nil {
		return "", "", err
	}
	if n > 0 {
		fkProblem = fmt.Sprintf("%d foreign key violation(s): %s", n, strings.Join(fks, "; "))
	}
	return integrityProblem, fkProblem, nil
}
