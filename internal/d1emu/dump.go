package d1emu

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// dumpHeader is the first line of every D1 dump.
const dumpHeader = "PRAGMA defer_foreign_keys=TRUE;\n"

// dumpOptions mirrors the export request's dump_options.
type dumpOptions struct {
	NoData   bool     `json:"no_data"`
	NoSchema bool     `json:"no_schema"`
	Tables   []string `json:"tables"`
}

// selects reports whether an object (table, index, trigger, view) of that
// name is part of the dump. D1 filters every object by its own name.
func (o dumpOptions) selects(name string) bool {
	return len(o.Tables) == 0 || slices.Contains(o.Tables, name)
}

// virtualTableError is why D1 refuses to export a database.
type virtualTableError struct{ Module string }

func (e *virtualTableError) Error() string {
	return fmt.Sprintf("cannot export databases with Virtual Tables (%s)", e.Module)
}

var virtualRE = regexp.MustCompile(`(?is)^\s*CREATE\s+VIRTUAL\s+TABLE\s+.*?\s+USING\s+([A-Za-z0-9_]+)`)

// findVirtualTable returns a *virtualTableError when the schema holds a
// virtual table, nil otherwise.
func findVirtualTable(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, `SELECT sql FROM sqlite_schema WHERE type='table' AND sql LIKE 'CREATE VIRTUAL TABLE%'`)
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return rows.Err()
	}
	// One virtual table is enough to refuse the export.
	var s string
	if err := rows.Scan(&s); err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	module := "unknown"
	if m := virtualRE.FindStringSubmatch(s); m != nil {
		module = strings.ToLower(m[1])
	}
	return &virtualTableError{Module: module}
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// dumpSQLite writes the D1 dump of db to w, filtered by opts. It returns the
// bytes written and a SHA-256 over the unfiltered dump (the database content,
// whatever the options), which feeds the bookmark.
func dumpSQLite(ctx context.Context, db *sql.DB, w io.Writer, opts dumpOptions) (int64, []byte, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, nil, fmt.Errorf("dump: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	if err := findVirtualTable(ctx, tx); err != nil {
		return 0, nil, err
	}
	cw := &countWriter{w: w}
	d := &dumper{ctx: ctx, tx: tx, out: bufio.NewWriterSize(cw, 256<<10), count: cw, sum: sha256.New(), opts: opts}
	if err := d.run(); err != nil {
		return d.count.n, nil, fmt.Errorf("dump: %w", err)
	}
	if err := d.out.Flush(); err != nil {
		return d.count.n, nil, fmt.Errorf("dump: write: %w", err)
	}
	return d.count.n, d.sum.Sum(nil), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type dumper struct {
	ctx   context.Context
	tx    *sql.Tx
	out   *bufio.Writer
	count *countWriter
	sum   hash.Hash
	opts  dumpOptions
	line  []byte
}

// emit feeds one statement to the content hash, and to the output when selected.
func (d *dumper) emit(line []byte, selected bool) error {
	d.sum.Write(line)
	if !selected {
		return nil
	}
	_, err := d.out.Write(line)
	return err
}

type schemaObject struct{ typ, name, tblName, sql string }

func (d *dumper) objects(query string) ([]schemaObject, error) {
	rows, err := d.tx.QueryContext(d.ctx, query)
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	defer rows.Close()
	var objs []schemaObject
	for rows.Next() {
		var o schemaObject
		if err := rows.Scan(&o.typ, &o.name, &o.tblName, &o.sql); err != nil {
			return nil, fmt.Errorf("read schema: %w", err)
		}
		objs = append(objs, o)
	}
	return objs, rows.Err()
}

func (d *dumper) run() error {
	if err := d.emit([]byte(dumpHeader), true); err != nil {
		return err
	}
	// Like the sqlite3 shell's .dump, which D1's format follows:
	// sqlite_sequence comes after every other table.
	tables, err := d.objects(`SELECT type, name, tbl_name, sql FROM sqlite_schema
		WHERE type='table' AND sql NOT NULL ORDER BY tbl_name='sqlite_sequence', rowid`)
	if err != nil {
		return err
	}
	schema, data := !d.opts.NoSchema, !d.opts.NoData
	for _, t := range tables {
		sel := d.opts.selects(t.name)
		switch {
		case strings.HasPrefix(t.name, "_cf_"):
			continue
		case t.name == "sqlite_sequence":
			if err := d.emit([]byte("DELETE FROM sqlite_sequence;\n"), sel && data); err != nil {
				return err
			}
		case t.name == "sqlite_stat1":
			// ANALYZE creates sqlite_stat1 for the rows that follow. Only
			// stat1 travels: sqlite_stat4 exists only in SQLite builds
			// with STAT4, and ANALYZE rebuilds it anyway.
			if err := d.emit([]byte("ANALYZE sqlite_schema;\n"), sel && data); err != nil {
				return err
			}
			if err := d.rows(t.name, `WHERE tbl NOT LIKE '\_cf\_%' ESCAPE '\'`, sel && data); err != nil {
				return err
			}
			continue
		case strings.HasPrefix(t.name, "sqlite_"):
			continue
		default:
			if err := d.emit([]byte(t.sql+";\n"), sel && schema); err != nil {
				return err
			}
		}
		if err := d.rows(t.name, "", sel && data); err != nil {
			return err
		}
	}
	others, err := d.objects(`SELECT type, name, tbl_name, sql FROM sqlite_schema
		WHERE sql NOT NULL AND type IN ('index','trigger','view') ORDER BY rowid`)
	if err != nil {
		return err
	}
	for _, o := range others {
		if strings.HasPrefix(o.name, "sqlite_") || strings.HasPrefix(o.name, "_cf_") || strings.HasPrefix(o.tblName, "_cf_") {
			continue
		}
		if err := d.emit([]byte(o.sql+";\n"), schema && d.opts.selects(o.name)); err != nil {
			return err
		}
	}
	return nil
}

// rows emits one INSERT per row of table (filtered by where), in rowid order.
func (d *dumper) rows(table, where string, selected bool) error {
	cols, err := d.columns(table)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return nil
	}
	prefix := []byte("INSERT INTO " + quoteIdent(table) + " (")
	exprs := make([]string, len(cols))
	for i, c := range cols {
		if i > 0 {
			prefix = append(prefix, ',')
		}
		prefix = append(prefix, quoteIdent(c)...)
		// The unary + keeps the value and drops the declared type, so the
		// driver never turns DATE/TIMESTAMP text into time.Time.
		exprs[i] = "+" + quoteIdent(c)
	}
	prefix = append(prefix, ") VALUES("...)
	sel := "SELECT " + strings.Join(exprs, ",") + " FROM " + quoteIdent(table) + " " + where
	rows, err := d.tx.QueryContext(d.ctx, sel+" ORDER BY _rowid_")
	if err != nil {
		// WITHOUT ROWID tables have no rowid: primary key order.
		rows, err = d.tx.QueryContext(d.ctx, sel)
		if err != nil {
			return fmt.Errorf("read table %s: %w", table, err)
		}
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read table %s: %w", table, err)
		}
		line := append(d.line[:0], prefix...)
		for i, v := range vals {
			if i > 0 {
				line = append(line, ',')
			}
			line = appendValue(line, v)
		}
		line = append(line, ");\n"...)
		d.line = line
		if err := d.emit(line, selected); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read table %s: %w", table, err)
	}
	return nil
}

func (d *dumper) columns(table string) ([]string, error) {
	// table_info leaves out generated and hidden columns, which cannot be inserted.
	rows, err := d.tx.QueryContext(d.ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("columns of %s: %w", table, err)
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// quoteIdent double-quotes an SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// appendValue appends v as an SQL literal the way D1's dump writes it.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "NULL"...)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case float64:
		return appendReal(b, v)
	case string:
		return appendText(b, v)
	case []byte:
		return appendBlob(b, v)
	case bool: // not produced by SQLite; for completeness
		if v {
			return append(b, '1')
		}
		return append(b, '0')
	default:
		return appendText(b, fmt.Sprint(v))
	}
}

// appendReal writes a REAL so that it reads back as the same REAL: integral
// values get ".0", others the shortest round-tripping form.
func appendReal(b []byte, r float64) []byte {
	switch {
	case math.IsInf(r, 1):
		return append(b, "9.0e+999"...)
	case math.IsInf(r, -1):
		return append(b, "-9.0e+999"...)
	case math.IsNaN(r):
		return append(b, "NULL"...)
	case r == math.Trunc(r) && math.Abs(r) < 1<<62:
		b = strconv.AppendInt(b, int64(r), 10)
		return append(b, ".0"...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, r, 'g', -1, 64)
	if !strings.ContainsAny(string(b[start:]), ".eEn") {
		b = append(b, ".0"...)
	}
	return b
}

const hexUpper = "0123456789ABCDEF"

func appendBlob(b []byte, v []byte) []byte {
	b = append(b, "X'"...)
	for _, c := range v {
		b = append(b, hexUpper[c>>4], hexUpper[c&15])
	}
	return append(b, '\'')
}

// appendText single-quotes s, doubling embedded quotes. Like the sqlite3 shell's
// .dump (whose format D1 follows), newlines and carriage returns become an
// escape token inside the literal, wrapped in replace(...,'\n',char(10)) and
// replace(...,'\r',char(13)); when the text already contains the token, an
// unused one is picked.
func appendText(b []byte, s string) []byte {
	if strings.IndexByte(s, 0) >= 0 {
		// SQL text literals cannot carry NUL: go through a blob.
		b = append(b, "CAST("...)
		b = appendBlob(b, []byte(s))
		return append(b, " AS TEXT)"...)
	}
	nNL := strings.Count(s, "\n")
	nCR := strings.Count(s, "\r")
	var zNL, zCR string
	if nNL > 0 {
		b = append(b, "replace("...)
		zNL = unusedToken(s, `\n`, `\012`)
	}
	if nCR > 0 {
		b = append(b, "replace("...)
		zCR = unusedToken(s, `\r`, `\015`)
	}
	b = append(b, '\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			b = append(b, '\'', '\'')
		case '\n':
			b = append(b, zNL...)
		case '\r':
			b = append(b, zCR...)
		default:
			b = append(b, c)
		}
	}
	b = append(b, '\'')
	if nCR > 0 {
		b = append(b, ",'"...)
		b = append(b, zCR...)
		b = append(b, "',char(13))"...)
	}
	if nNL > 0 {
		b = append(b, ",'"...)
		b = append(b, zNL...)
		b = append(b, "',char(10))"...)
	}
	return b
}

// unusedToken mirrors the sqlite3 shell's unused_string.
func unusedToken(s, a, b string) string {
	if !strings.Contains(s, a) {
		return a
	}
	if !strings.Contains(s, b) {
		return b
	}
	for i := 0; ; i++ {
		t := "(" + a + strconv.Itoa(i) + ")"
		if !strings.Contains(s, t) {
			return t
		}
	}
}

// errNotSQLite marks a synthetic database where SQLite is needed.
var errNotSQLite = errors.New("synthetic database has no SQLite file")
