package d1emu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// liteConn is a SQLite connection driven through SQLite's C API (as
// modernc.org/sqlite/lib transpiles it), for the query API. database/sql
// hides what the query API needs: statement tails (SQLite splits the
// statements), parameter counts, error offsets, read-only statements and
// exact values (the driver turns DATE/TIMESTAMP text into time.Time).
// Calls are serialized by the database's lock; only interrupt may come
// from another goroutine.
type liteConn struct {
	tls *libc.TLS
	db  uintptr

	mu      sync.Mutex // guards running against a late interrupt
	running bool
}

const ptrSize = int(unsafe.Sizeof(uintptr(0)))

// D1's documented limits, as sqlite3_limit sets them in D1.
var liteLimits = []struct{ id, value int32 }{
	{sqlite3.SQLITE_LIMIT_LENGTH, 2_000_000},
	{sqlite3.SQLITE_LIMIT_SQL_LENGTH, MaxStatementBytes},
	{sqlite3.SQLITE_LIMIT_COLUMN, 100},
	{sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100},
	{sqlite3.SQLITE_LIMIT_FUNCTION_ARG, 32},
	{sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50},
	// No ATTACH: it (and VACUUM INTO) would reach files outside the database.
	{sqlite3.SQLITE_LIMIT_ATTACHED, 0},
}

func openLite(path string) (*liteConn, error) {
	c := &liteConn{tls: libc.NewTLS()}
	name, err := libc.CString(path)
	if err != nil {
		c.tls.Close()
		return nil, err
	}
	defer libc.Xfree(c.tls, name)
	pp := c.malloc(ptrSize)
	defer libc.Xfree(c.tls, pp)
	rc := sqlite3.Xsqlite3_open_v2(c.tls, name, pp, sqlite3.SQLITE_OPEN_READWRITE, 0)
	c.db = readPtr(pp)
	if rc != sqlite3.SQLITE_OK {
		err := c.error(rc)
		c.close()
		return nil, err
	}
	sqlite3.Xsqlite3_busy_timeout(c.tls, c.db, 5000)
	// Defensive, as D1 is: no writable_schema, no corrupting the file.
	va := c.malloc(16) // libc.VaList: 8 bytes per argument
	rc = sqlite3.Xsqlite3_db_config(c.tls, c.db, sqlite3.SQLITE_DBCONFIG_DEFENSIVE, libc.VaList(va, int32(1), uintptr(0)))
	libc.Xfree(c.tls, va)
	if rc != sqlite3.SQLITE_OK {
		err := c.error(rc)
		c.close()
		return nil, err
	}
	for _, l := range liteLimits {
		sqlite3.Xsqlite3_limit(c.tls, c.db, l.id, l.value)
	}
	if err := c.exec("PRAGMA foreign_keys=ON"); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *liteConn) close() {
	if c.db != 0 {
		sqlite3.Xsqlite3_close_v2(c.tls, c.db)
		c.db = 0
	}
	c.tls.Close()
}

func (c *liteConn) malloc(n int) uintptr {
	p := libc.Xmalloc(c.tls, types.Size_t(n))
	if p == 0 {
		panic(fmt.Sprintf("d1emu: cannot allocate %d bytes", n))
	}
	return p
}

// readPtr reads the pointer SQLite stored at p.
func readPtr(p uintptr) uintptr {
	b := libc.GoBytes(p, ptrSize)
	if ptrSize == 8 {
		return uintptr(binary.NativeEndian.Uint64(b))
	}
	return uintptr(binary.NativeEndian.Uint32(b))
}

// liteError is a SQLite error; its text is how D1 reports it.
type liteError struct {
	code   int32 // primary result code
	msg    string
	offset int // of the error in the statement, or -1
}

func (e *liteError) Error() string {
	if e.offset >= 0 {
		return fmt.Sprintf("%s at offset %d: %s", e.msg, e.offset, codeName(e.code))
	}
	return e.msg + ": " + codeName(e.code)
}

func (c *liteConn) error(rc int32) *liteError {
	e := &liteError{code: rc & 0xff, msg: libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, rc)), offset: -1}
	if c.db != 0 {
		e.msg = libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db))
		e.offset = int(sqlite3.Xsqlite3_error_offset(c.tls, c.db))
	}
	return e
}

var codeNames = map[int32]string{
	sqlite3.SQLITE_ERROR: "SQLITE_ERROR", sqlite3.SQLITE_INTERNAL: "SQLITE_INTERNAL", sqlite3.SQLITE_PERM: "SQLITE_PERM",
	sqlite3.SQLITE_ABORT: "SQLITE_ABORT", sqlite3.SQLITE_BUSY: "SQLITE_BUSY", sqlite3.SQLITE_LOCKED: "SQLITE_LOCKED",
	sqlite3.SQLITE_NOMEM: "SQLITE_NOMEM", sqlite3.SQLITE_READONLY: "SQLITE_READONLY", sqlite3.SQLITE_INTERRUPT: "SQLITE_INTERRUPT",
	sqlite3.SQLITE_IOERR: "SQLITE_IOERR", sqlite3.SQLITE_CORRUPT: "SQLITE_CORRUPT", sqlite3.SQLITE_FULL: "SQLITE_FULL",
	sqlite3.SQLITE_CANTOPEN: "SQLITE_CANTOPEN", sqlite3.SQLITE_SCHEMA: "SQLITE_SCHEMA", sqlite3.SQLITE_TOOBIG: "SQLITE_TOOBIG",
	sqlite3.SQLITE_CONSTRAINT: "SQLITE_CONSTRAINT", sqlite3.SQLITE_MISMATCH: "SQLITE_MISMATCH", sqlite3.SQLITE_MISUSE: "SQLITE_MISUSE",
	sqlite3.SQLITE_AUTH: "SQLITE_AUTH", sqlite3.SQLITE_RANGE: "SQLITE_RANGE", sqlite3.SQLITE_NOTADB: "SQLITE_NOTADB",
}

func codeName(code int32) string {
	if n, ok := codeNames[code]; ok {
		return n
	}
	return fmt.Sprintf("SQLITE_%d", code)
}

// liteStmt is a prepared statement.
type liteStmt struct {
	c *liteConn
	p uintptr
}

// prepare compiles the first statement of the n bytes of C text at z; it
// returns a zero statement when the text holds none, and where the rest
// of the text starts.
func (c *liteConn) prepare(z uintptr, n int) (liteStmt, uintptr, error) {
	pp := c.malloc(2 * ptrSize)
	defer libc.Xfree(c.tls, pp)
	if rc := sqlite3.Xsqlite3_prepare_v2(c.tls, c.db, z, int32(n), pp, pp+uintptr(ptrSize)); rc != sqlite3.SQLITE_OK {
		return liteStmt{}, 0, c.error(rc)
	}
	return liteStmt{c: c, p: readPtr(pp)}, readPtr(pp + uintptr(ptrSize)), nil
}

// exec runs statements that return nothing of interest (BEGIN, PRAGMA ...).
func (c *liteConn) exec(sql string) error {
	_, err := c.queryInt(sql)
	return err
}

// queryInt runs sql and returns the first column of its first row (0
// without rows).
func (c *liteConn) queryInt(sql string) (int64, error) {
	z, err := libc.CString(sql)
	if err != nil {
		return 0, err
	}
	defer libc.Xfree(c.tls, z)
	st, _, err := c.prepare(z, len(sql))
	if err != nil || st.p == 0 {
		return 0, err
	}
	defer st.finalize()
	var v int64
	for {
		row, err := st.step()
		if err != nil || !row {
			return v, err
		}
		if v == 0 {
			v = st.int64(0)
		}
	}
}

// inTransaction reports whether a transaction is open.
func (c *liteConn) inTransaction() bool {
	return sqlite3.Xsqlite3_get_autocommit(c.tls, c.db) == 0
}

func (c *liteConn) totalChanges() int64 {
	return sqlite3.Xsqlite3_total_changes64(c.tls, c.db)
}

func (c *liteConn) lastInsertRowID() int64 {
	return sqlite3.Xsqlite3_last_insert_rowid(c.tls, c.db)
}

// watch makes interrupt effective until the returned func is called.
func (c *liteConn) watch() (done func()) {
	c.mu.Lock()
	c.running = true
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}
}

// interrupt stops the running statements, if the watch is still on: a late
// call never reaches a later request.
func (c *liteConn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return
	}
	// Not c.tls: it belongs to the goroutine running the statement.
	tls := libc.NewTLS()
	sqlite3.Xsqlite3_interrupt(tls, c.db)
	tls.Close()
}

func (st liteStmt) finalize() { sqlite3.Xsqlite3_finalize(st.c.tls, st.p) }

func (st liteStmt) paramCount() int {
	return int(sqlite3.Xsqlite3_bind_parameter_count(st.c.tls, st.p))
}

func (st liteStmt) readonly() bool { return sqlite3.Xsqlite3_stmt_readonly(st.c.tls, st.p) != 0 }

// bind sets parameter i (1-based) to v: nil, int64, float64, string or []byte.
func (st liteStmt) bind(i int, v any) error {
	tls, p, n := st.c.tls, st.p, int32(i)
	var rc int32
	switch v := v.(type) {
	case nil:
		rc = sqlite3.Xsqlite3_bind_null(tls, p, n)
	case int64:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, n, v)
	case float64:
		rc = sqlite3.Xsqlite3_bind_double(tls, p, n, v)
	case string:
		rc = st.bindBytes(n, []byte(v), true)
	case []byte:
		rc = st.bindBytes(n, v, false)
	default:
		return fmt.Errorf("d1emu: cannot bind %T", v)
	}
	if rc != sqlite3.SQLITE_OK {
		return st.c.error(rc)
	}
	return nil
}

func (st liteStmt) bindBytes(i int32, b []byte, text bool) int32 {
	tls := st.c.tls
	z := st.c.malloc(max(len(b), 1))
	defer libc.Xfree(tls, z)
	copy(libc.GoBytes(z, len(b)), b)
	// SQLITE_TRANSIENT: SQLite copies the value before the buffer is freed.
	if text {
		return sqlite3.Xsqlite3_bind_text64(tls, st.p, i, z, uint64(len(b)), sqlite3.SQLITE_TRANSIENT, sqlite3.SQLITE_UTF8)
	}
	return sqlite3.Xsqlite3_bind_blob64(tls, st.p, i, z, uint64(len(b)), sqlite3.SQLITE_TRANSIENT)
}

// step advances to the next row; false when the statement is done.
func (st liteStmt) step() (bool, error) {
	switch rc := sqlite3.Xsqlite3_step(st.c.tls, st.p); rc {
	case sqlite3.SQLITE_ROW:
		return true, nil
	case sqlite3.SQLITE_DONE:
		return false, nil
	default:
		return false, st.c.error(rc)
	}
}

func (st liteStmt) columns() []string {
	n := int(sqlite3.Xsqlite3_column_count(st.c.tls, st.p))
	names := make([]string, n)
	for i := range names {
		names[i] = libc.GoString(sqlite3.Xsqlite3_column_name(st.c.tls, st.p, int32(i)))
	}
	return names
}

func (st liteStmt) int64(i int) int64 {
	return sqlite3.Xsqlite3_column_int64(st.c.tls, st.p, int32(i))
}

// value is column i of the current row: nil, int64, float64, string or []byte.
func (st liteStmt) value(i int) any {
	tls, p, n := st.c.tls, st.p, int32(i)
	switch sqlite3.Xsqlite3_column_type(tls, p, n) {
	case sqlite3.SQLITE_INTEGER:
		return sqlite3.Xsqlite3_column_int64(tls, p, n)
	case sqlite3.SQLITE_FLOAT:
		return sqlite3.Xsqlite3_column_double(tls, p, n)
	case sqlite3.SQLITE_TEXT:
		z := sqlite3.Xsqlite3_column_text(tls, p, n)
		return string(libc.GoBytes(z, int(sqlite3.Xsqlite3_column_bytes(tls, p, n))))
	case sqlite3.SQLITE_BLOB:
		z := sqlite3.Xsqlite3_column_blob(tls, p, n)
		return append([]byte{}, libc.GoBytes(z, int(sqlite3.Xsqlite3_column_bytes(tls, p, n)))...)
	}
	return nil
}

// isInterrupt reports whether err is SQLite's answer to an interrupt.
func isInterrupt(err error) bool {
	var le *liteError
	return errors.As(err, &le) && le.code == sqlite3.SQLITE_INTERRUPT
}

// d1Message renders an error from database/sql the way D1 reports SQLite
// errors ("no such table: t: SQLITE_ERROR"); other errors pass as they are.
func d1Message(err error) string {
	var se interface{ Code() int }
	if !errors.As(err, &se) {
		return err.Error()
	}
	code := int32(se.Code())
	// The driver's text is "<errstr>: <errmsg> (<code>)".
	msg := strings.TrimSuffix(err.Error(), " (SQLITE_BUSY)")
	msg = strings.TrimSuffix(msg, fmt.Sprintf(" (%d)", code))
	tls := libc.NewTLS()
	prefix := libc.GoString(sqlite3.Xsqlite3_errstr(tls, code)) + ": "
	tls.Close()
	return strings.TrimPrefix(msg, prefix) + ": " + codeName(code&0xff)
}
