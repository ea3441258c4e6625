// Package sqlitedb opens SQLite database files (modernc.org/sqlite, no cgo)
// the way d1backup uses them: one connection, so PRAGMAs and transactions
// apply to every statement, and a busy timeout.
package sqlitedb

import (
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // driver "sqlite"
)

// Open opens the database file at path with one connection and checks it
// answers. pragmas are applied to the connection as it opens
// ("foreign_keys(0)"); the driver's own DSN options ("_defensive=1") may be
// given the same way, starting with an underscore.
func Open(path string, options ...string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	q := []string{"_pragma=busy_timeout(5000)"}
	for _, o := range options {
		if strings.HasPrefix(o, "_") {
			q = append(q, o)
		} else {
			q = append(q, "_pragma="+o)
		}
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: strings.Join(q, "&")}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
