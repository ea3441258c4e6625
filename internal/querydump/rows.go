package querydump

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/d1backup/d1backup/internal/d1"
)

// table is one table whose rows the dump holds, and the SQL that reads it.
type table struct {
	name   string
	create string
	cols   []string // quoted column names, in cid order
	// keys order the rows and page through them: the rowid, or the
	// primary key columns of a WITHOUT ROWID table.
	keys     []string
	rowidKey bool
	// insertRowid: the INSERT carries the rowid (a contentful FTS5 table,
	// whose rowids external references and MATCH results use).
	insertRowid bool
	// prefix starts each row's INSERT; head starts each page's SELECT.
	prefix string
	head   string
}

// sequenceTable reads sqlite_sequence, which AUTOINCREMENT keeps.
var sequenceTable = newTable("sqlite_sequence", "", []string{"name", "seq"}, []string{"rowid"}, true, false)

func newTable(name, create string, cols, keys []string, rowidKey, insertRowid bool) *table {
	t := &table{name: name, create: create, keys: keys, rowidKey: rowidKey, insertRowid: insertRowid}
	for _, c := range cols {
		t.cols = append(t.cols, quoteIdent(c))
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + quoteIdent(name))
	if insertRowid {
		b.WriteString("(rowid," + strings.Join(t.cols, ",") + ")")
	} else {
		b.WriteString(" (" + strings.Join(t.cols, ",") + ")")
	}
	b.WriteString(" VALUES(")
	t.prefix = b.String()
	b.Reset()
	b.WriteString("SELECT ")
	for _, k := range keys {
		b.WriteString("quote(" + k + "),")
	}
	// The row's literals, joined, are one value: NULL when they could pass
	// the row budget (quote() at most doubles a value, plus a few bytes),
	// and the row is then read column by column.
	b.WriteString("CASE WHEN 2*(")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteByte('+')
		}
		b.WriteString("ifnull(length(CAST(" + c + " AS BLOB)),0)")
	}
	fmt.Fprintf(&b, ")+%d <= %%d THEN ", 16*len(cols))
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString("||','||")
		}
		// quote() stops text at a NUL byte: such text goes through a BLOB.
		b.WriteString("CASE WHEN typeof(" + c + ")='text' AND instr(CAST(" + c + " AS BLOB),X'00')>0 THEN 'CAST('||quote(CAST(" + c + " AS BLOB))||' AS TEXT)' ELSE quote(" + c + ") END")
	}
	b.WriteString(" END FROM " + quoteIdent(name))
	t.head = b.String()
	return t
}

// pageSQL selects up to limit rows after the key values after (literals).
func (t *table) pageSQL(after []string, limit, rowBytes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, t.head, rowBytes)
	if after != nil {
		if len(t.keys) == 1 {
			b.WriteString(" WHERE " + t.keys[0] + " > " + after[0])
		} else {
			b.WriteString(" WHERE (" + strings.Join(t.keys, ",") + ") > (" + strings.Join(after, ",") + ")")
		}
	}
	fmt.Fprintf(&b, " ORDER BY %s LIMIT %d", strings.Join(t.keys, ","), limit)
	return b.String()
}

// keyEq is the condition that picks the row with the key values given.
func (t *table) keyEq(keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range t.keys {
		parts[i] = k + " = " + keys[i]
	}
	return strings.Join(parts, " AND ")
}

// plan builds the tables whose rows are read: the ordinary ones, then the
// contentful FTS5 ones, in the order the dump writes them.
func (d *dumper) plan(sc *schema) ([]*table, error) {
	var out []*table
	for _, o := range sc.tables {
		ti := sc.info[strings.ToLower(o.name)]
		var cols []string
		for _, c := range ti.cols {
			cols = append(cols, c.name)
		}
		var keys []string
		rowid := !ti.noRowid
		if rowid {
			alias, ok := rowidAlias(ti.cols)
			if !ok {
				return nil, &UnsupportedError{Table: o.name, Msg: "its columns hide every name of the rowid (rowid, _rowid_, oid) and it has no INTEGER PRIMARY KEY to page by"}
			}
			keys = []string{alias}
		} else {
			keys = pkColumns(ti.cols)
			if len(keys) == 0 || len(keys) >= 100 {
				return nil, d.bad("WITHOUT ROWID table %s has %d primary key columns", o.name, len(keys))
			}
		}
		out = append(out, newTable(o.name, o.sql, cols, keys, rowid, false))
	}
	for _, v := range sc.vtabs {
		if v.module != moduleFTS5 || v.content != contentOwn {
			continue
		}
		ti := sc.info[strings.ToLower(v.name)]
		if ti == nil || len(ti.cols) == 0 {
			return nil, d.bad("FTS5 table %s has no columns in table_info", v.name)
		}
		var cols []string
		for _, c := range ti.cols {
			cols = append(cols, c.name)
		}
		out = append(out, newTable(v.name, "", cols, []string{"rowid"}, true, true))
	}
	return out, nil
}

func rowidAlias(cols []column) (string, bool) {
	for _, a := range []string{"rowid", "_rowid_", "oid"} {
		taken := false
		for _, c := range cols {
			taken = taken || strings.EqualFold(c.name, a)
		}
		if !taken {
			return a, true
		}
	}
	// An INTEGER PRIMARY KEY is the rowid under its own name.
	if pk := pkColumns(cols); len(pk) == 1 {
		for _, c := range cols {
			if c.pk == 1 && strings.EqualFold(c.typ, "INTEGER") {
				return pk[0], true
			}
		}
	}
	return "", false
}

// pkColumns are the quoted primary key columns in key order.
func pkColumns(cols []column) []string {
	var out []string
	for n := 1; ; n++ {
		found := false
		for _, c := range cols {
			if c.pk == n {
				out, found = append(out, quoteIdent(c.name)), true
			}
		}
		if !found {
			return out
		}
	}
}

func (sc *schema) hasTable(name string) bool {
	if _, ok := sc.info[strings.ToLower(name)]; ok {
		return true
	}
	for _, o := range sc.others {
		if o.typ == "view" && strings.EqualFold(o.name, name) {
			return true
		}
	}
	return false
}

// rows writes one INSERT per row of t, page by page: a page's size follows
// the rows' size, and shrinks when D1 refuses it (a response or time limit).
func (d *dumper) rows(t *table) error {
	d.prog.Table = t.name
	var after []string
	limit, ceiling := d.opts.FirstPageRows, d.opts.PageRows
	for {
		res, err := d.query(t.pageSQL(after, limit, d.opts.RowBytes), 1)
		var qe *d1.QueryError
		switch {
		case errors.As(err, &qe) && limit > 1:
			d.log.Debug("page refused; halving it", "table", t.name, "rows", limit, "cause", err)
			limit = max(1, limit/2)
			ceiling = limit
			continue
		case errors.As(err, &qe):
			// Not even one row fits in a page: read the next row by itself.
			keys, err := d.nextKey(t, after)
			if err != nil || keys == nil {
				d.finishTable(t)
				return err
			}
			if err := d.slowRow(t, keys); err != nil {
				return err
			}
			after = keys
			continue
		case err != nil:
			return err
		}
		rows := res[0].Rows
		size := 0
		for _, row := range rows {
			keys, lit, err := d.checkRow(t, row, after)
			if err != nil {
				return err
			}
			// U+FFFD may stand for bytes that are not UTF-8, which JSON
			// cannot carry: such a row goes through hex.
			if lit == "" || strings.Contains(lit, "\uFFFD") {
				err = d.slowRow(t, keys)
			} else {
				err = d.emitRow(t, keys, lit)
			}
			if err != nil {
				return err
			}
			size += len(lit)
			after = keys
		}
		d.report()
		if len(rows) < limit {
			d.finishTable(t)
			return nil
		}
		ceiling = min(2*ceiling, d.opts.PageRows)
		limit = min(max(d.opts.PageBytes/max(size/len(rows), 1), 1), ceiling)
	}
}

func (d *dumper) finishTable(t *table) {
	d.prog.TablesDone++
	if t != sequenceTable {
		d.stats.Tables++
	}
	d.report()
}

func (d *dumper) report() {
	d.prog.Rows = d.stats.Rows
	d.prog.Bytes = d.stats.Bytes
	if d.opts.Progress != nil {
		d.opts.Progress(d.prog)
	}
}

// checkRow checks one page row: key literals that move forward, then the
// row's literals (or NULL when the row is read column by column).
func (d *dumper) checkRow(t *table, row []any, after []string) (keys []string, lit string, err error) {
	if len(row) != len(t.keys)+1 {
		return nil, "", d.bad("table %s: a row of %d values, want %d", t.name, len(row), len(t.keys)+1)
	}
	keys = make([]string, len(t.keys))
	for i := range t.keys {
		s, ok := row[i].(string)
		if !ok || checkLiterals(s, 1) != nil {
			return nil, "", d.bad("table %s: a key value is not an SQL literal", t.name)
		}
		keys[i] = s
	}
	if t.rowidKey {
		if err := checkInteger(keys[0]); err != nil {
			return nil, "", d.bad("table %s: rowid %v", t.name, err)
		}
		if after != nil {
			prev, _ := strconv.ParseInt(after[0], 10, 64)
			if cur, err := strconv.ParseInt(keys[0], 10, 64); err != nil || cur <= prev {
				return nil, "", d.bad("table %s: rowid %s does not follow %s", t.name, keys[0], after[0])
			}
		}
	} else if after != nil && strings.Join(keys, "\x00") == strings.Join(after, "\x00") {
		return nil, "", d.bad("table %s: the same key twice", t.name)
	}
	if row[len(t.keys)] == nil {
		return keys, "", nil
	}
	lit, ok := row[len(t.keys)].(string)
	if !ok {
		return nil, "", d.bad("table %s: a row's values are not text", t.name)
	}
	if err := checkLiterals(lit, len(t.cols)); err != nil {
		return nil, "", d.bad("table %s: row %s: %v", t.name, strings.Join(keys, ","), err)
	}
	return keys, lit, nil
}

func (d *dumper) emitRow(t *table, keys []string, lit string) error {
	line := t.prefix
	if t.insertRowid {
		line += keys[0] + ","
	}
	d.stats.Rows++
	return d.write(line + lit + ");\n")
}

// nextKey returns the key of the row after after, or nil at the end.
func (d *dumper) nextKey(t *table, after []string) ([]string, error) {
	q := t.pageSQL(after, 1, 0)
	res, err := d.query(q, 1)
	if err != nil || len(res[0].Rows) == 0 {
		return nil, err
	}
	keys, _, err := d.checkRow(t, res[0].Rows[0], after)
	return keys, err
}
