package restore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// A dump is data: loading one may create tables, indexes, views, triggers
// and fts5 tables, insert rows, set PRAGMA defer_foreign_keys, rewrite
// sqlite_sequence and write sqlite_stat1/4 rows, and nothing else. SQLite
// enforces it, not text matching: every statement is compiled under the
// authorizer below, which sees each operation SQLite is about to allow,
// and the connection runs with limits that bound what any statement can
// allocate or touch (no attached database, values and rows of at most
// maxValueBytes, statements of at most MaxLoadStatementBytes, a database
// of at most the size given to load).

// Limits of a loading connection. D1's own are 100 columns, 32 function
// arguments and 2,000,000-byte values; a dump's text literal with escaped
// newlines is up to twice its value, hence maxValueBytes. What one
// statement can hold in memory is about maxColumns values of
// maxValueBytes (a row is built before its size is checked): 400 MiB at
// worst, a few MB for any row D1 holds.
const (
	maxValueBytes   = 4 << 20
	maxColumns      = 100
	maxFunctionArgs = 64
	maxLikePattern  = 1000
)

// phase is what the authorizer is looking at.
type phase int

const (
	// phaseOwn: the loader's own statements (transaction, reads).
	phaseOwn phase = iota
	// phasePrepare: a dump statement being compiled.
	phasePrepare
	// phaseStep: a dump statement running; what gets compiled now is
	// SQLite's or fts5's own work for it (fts5 keeps its index in shadow
	// tables it reads and writes with nested statements).
	phaseStep
)

// deniedFunctions touch files or the process: extensions, the error log.
var deniedFunctions = map[string]bool{"load_extension": true, "sqlite_log": true}

// fts5Shadow are the suffixes of an fts5 table's shadow tables.
var fts5Shadow = []string{"_data", "_idx", "_content", "_docsize", "_config"}

// policy is the authorizer of a loading connection. It must not use the
// connection (SQLite calls it while compiling).
type policy struct {
	phase phase
	// Of the whole load: fts5 tables and triggers created so far.
	fts5     map[string]bool
	triggers map[string]bool
	// Of the statement being loaded.
	refusal    string          // why it was refused (the first denial)
	writes     bool            // it does something a dump does
	txn        bool            // it is transaction control (BEGIN, COMMIT, ... made a no-op)
	actions    int             // operations authorized
	selects    int             // SELECTs (a multi-row VALUES is one)
	created    map[string]bool // tables it creates or indexes (it may read them)
	insertInto string          // the table it inserts into
}

func newPolicy() *policy {
	return &policy{fts5: map[string]bool{}, triggers: map[string]bool{}, created: map[string]bool{}}
}

// begin starts the compilation of a dump statement.
func (p *policy) begin() {
	p.phase, p.refusal, p.writes, p.txn, p.actions, p.selects, p.insertInto = phasePrepare, "", false, false, 0, 0, ""
	clear(p.created)
}

func (p *policy) deny(format string, args ...any) sqlite.AuthorizerReturnCode {
	if p.refusal == "" {
		p.refusal = fmt.Sprintf(format, args...)
	}
	return sqlite.AuthorizerDeny
}

// lower folds ASCII letters, as SQLite does for names.
func lower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

func (p *policy) isShadow(table string) bool {
	t := lower(table)
	for _, suf := range fts5Shadow {
		if base, ok := strings.CutSuffix(t, suf); ok && p.fts5[base] {
			return true
		}
	}
	return false
}

// authorize is the AuthorizerFn. arg1 and arg2 depend on the action
// (https://www.sqlite.org/c3ref/c_alter_table.html); inner names the
// trigger or view (or common table expression) whose body is compiled.
func (p *policy) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, db, inner string) sqlite.AuthorizerReturnCode {
	if action == sqlite.AuthFunction && deniedFunctions[lower(arg2)] {
		return p.deny("it calls %s(), which reaches outside the database", arg2)
	}
	switch p.phase {
	case phasePrepare:
		p.actions++
		return p.prepare(action, arg1, arg2, db, inner)
	case phaseStep:
		return p.step(action, arg1, arg2, inner)
	}
	return sqlite.AuthorizerOK
}

// dumpSystemTables: SQLite writes its schema table while creating objects
// (and refuses writes to it from SQL itself); a dump writes the others.
var dumpSystemTables = map[string]bool{"sqlite_master": true, "sqlite_schema": true, "sqlite_sequence": true, "sqlite_stat1": true, "sqlite_stat4": true}

func (p *policy) prepare(action sqlite.AuthorizerActionCode, arg1, arg2, db, inner string) sqlite.AuthorizerReturnCode {
	if inner != "" {
		if p.triggers[lower(inner)] {
			return p.deny("it fires trigger %s, which the dump created before it (a dump creates its triggers after its rows)", inner)
		}
		return p.deny("it queries %s (a dump's statements hold their values)", inner)
	}
	if db != "" && db != "main" {
		return p.deny("it reaches database %s (a dump holds one database)", db)
	}
	t := lower(arg1)
	switch action {
	case sqlite.AuthCreateTable, sqlite.AuthCreateView:
		p.writes, p.created[t] = true, true
	case sqlite.AuthCreateIndex:
		p.writes, p.created[lower(arg2)] = true, true
	case sqlite.AuthCreateTrigger:
		p.writes, p.triggers[t] = true, true
	case sqlite.AuthCreateVTable:
		if lower(arg2) != "fts5" {
			return p.deny("it creates a virtual table using %s (only fts5 tables are restored)", arg2)
		}
		p.writes, p.created[t], p.fts5[t] = true, true, true
	case sqlite.AuthInsert:
		if strings.HasPrefix(t, "sqlite_") && !dumpSystemTables[t] {
			return p.deny("it writes %s", arg1)
		}
		p.writes = true
		if p.insertInto == "" && t != "sqlite_master" && t != "sqlite_schema" {
			p.insertInto = arg1
		}
	case sqlite.AuthUpdate:
		if t != "sqlite_master" && t != "sqlite_schema" {
			return p.deny("it updates %s (a dump inserts rows)", arg1)
		}
	case sqlite.AuthDelete:
		switch t {
		case "sqlite_sequence":
			p.writes = true
		case "sqlite_master", "sqlite_schema":
			return p.deny("it drops or alters what the dump created")
		default:
			return p.deny("it deletes from %s (a dump inserts rows)", arg1)
		}
	case sqlite.AuthPragma:
		if t != "defer_foreign_keys" {
			return p.deny("it is PRAGMA %s (a dump sets only defer_foreign_keys)", arg1)
		}
		p.writes = true
	case sqlite.AuthTransaction, sqlite.AuthSavepoint:
		p.txn = true
		if lower(arg1) == "rollback" {
			return p.deny("it rolls back (restore loads a dump in one transaction)")
		}
		// The load is one transaction: its BEGIN and COMMIT do nothing.
		return sqlite.AuthorizerIgnore
	case sqlite.AuthRead:
		if !dumpSystemTables[t] && !p.created[t] {
			return p.deny("it reads table %s (a dump's statements hold their values)", arg1)
		}
	case sqlite.AuthSelect:
		// A multi-row VALUES list compiles as one SELECT; more is a query.
		if p.selects++; p.selects > 1 {
			return p.deny("it holds a query (a dump's statements hold their values)")
		}
	case sqlite.AuthFunction, sqlite.AuthReindex:
	case sqlite.AuthAnalyze:
		p.writes = true
	case sqlite.AuthAttach, sqlite.AuthDetach:
		return p.deny("it attaches or detaches a database (a dump holds one database)")
	case sqlite.AuthRecursive:
		return p.deny("it holds a recursive query")
	case sqlite.AuthCreateTempTable, sqlite.AuthCreateTempIndex, sqlite.AuthCreateTempTrigger, sqlite.AuthCreateTempView:
		return p.deny("it creates a temporary object")
	default:
		return p.deny("it drops, alters or otherwise changes what the dump created (operation %d)", int(action))
	}
	return sqlite.AuthorizerOK
}

// step authorizes what SQLite and fts5 compile while a dump statement
// runs: their reads, fts5's writes of its shadow tables (which the
// connection's defensive mode keeps dump statements themselves from
// writing), SQLite's writes of its schema table.
func (p *policy) step(action sqlite.AuthorizerActionCode, arg1, arg2, inner string) sqlite.AuthorizerReturnCode {
	if p.triggers[lower(inner)] {
		return p.deny("it fires trigger %s", inner)
	}
	t := lower(arg1)
	switch action {
	case sqlite.AuthSelect, sqlite.AuthRead, sqlite.AuthFunction:
		return sqlite.AuthorizerOK
	case sqlite.AuthPragma:
		if t == "data_version" {
			return sqlite.AuthorizerOK
		}
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete, sqlite.AuthCreateTable:
		if t == "sqlite_master" || p.isShadow(arg1) {
			return sqlite.AuthorizerOK
		}
	case sqlite.AuthCreateIndex:
		if p.isShadow(arg2) {
			return sqlite.AuthorizerOK
		}
	}
	return p.deny("while running, it does what a dump does not (operation %d on %q)", int(action), arg1)
}

// refusedKind says why a compiled statement that passed the authorizer is
// still no dump statement: it changes nothing (a query), or SQLite asked
// about nothing while compiling it (VACUUM is one such) though it is more
// than comments. "" when fine.
func (p *policy) refusedKind(text []byte) string {
	switch {
	case p.writes || p.txn:
		return ""
	case p.actions > 0:
		return "it changes nothing a dump holds (a query?)"
	case !onlyComments(text):
		return "it is no statement a dump holds"
	}
	return ""
}

// onlyComments reports whether SQLite sees nothing but white space and
// comments in a statement (its closing ';' aside).
func onlyComments(text []byte) bool {
	o := newOracle()
	defer o.close()
	cl := classes()
	o.load(bytes.TrimSuffix(text, []byte(";")), []byte("\n"))
	if o.complete("") {
		return false
	}
	s := cl.states[cl.classify(o)]
	return s.empty && !s.open
}

// install sets the limits and the authorizer on conn. maxDBBytes bounds
// the database file (0: no bound).
func (p *policy) install(ctx context.Context, conn *sql.Conn, maxDBBytes int64) error {
	for _, l := range []struct{ id, val int }{
		{sqlite3.SQLITE_LIMIT_ATTACHED, 0},
		{sqlite3.SQLITE_LIMIT_LENGTH, maxValueBytes},
		{sqlite3.SQLITE_LIMIT_SQL_LENGTH, MaxLoadStatementBytes},
		{sqlite3.SQLITE_LIMIT_COLUMN, maxColumns},
		{sqlite3.SQLITE_LIMIT_FUNCTION_ARG, maxFunctionArgs},
		{sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, maxLikePattern},
		{sqlite3.SQLITE_LIMIT_WORKER_THREADS, 0},
	} {
		if _, err := sqlite.Limit(conn, l.id, l.val); err != nil {
			return fmt.Errorf("set limit %d: %w", l.id, err)
		}
	}
	if maxDBBytes > 0 {
		var pageSize int64
		if err := conn.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
			return fmt.Errorf("page size: %w", err)
		}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, maxDBBytes/pageSize+1)); err != nil {
			return fmt.Errorf("max_page_count: %w", err)
		}
	}
	return conn.Raw(func(dc any) error {
		r, ok := dc.(sqlite.AuthorizerRegisterer)
		if !ok {
			return fmt.Errorf("the SQLite driver offers no authorizer")
		}
		return r.RegisterAuthorizer(p.authorize)
	})
}
