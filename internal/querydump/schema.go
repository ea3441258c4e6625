package querydump

import (
	"fmt"
	"strings"

	"github.com/d1backup/d1backup/internal/d1"
)

// The schema is read in one request: sqlite_schema in rowid order (D1's
// dump order), and every table's insertable columns (table_info leaves out
// generated and hidden ones), key and kind (table_list marks the shadow
// tables of virtual tables and WITHOUT ROWID tables).
const (
	schemaSQL = `SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid`
	columnSQL = `SELECT m.name, l.type, l.wr, p.name, p.type, p.pk FROM sqlite_schema AS m` +
		` JOIN pragma_table_list(m.name) AS l JOIN pragma_table_info(m.name) AS p` +
		` WHERE m.type = 'table' AND l.schema = 'main'` +
		` AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\' AND m.name NOT LIKE '\_cf\_%' ESCAPE '\'` +
		` ORDER BY m.rowid, p.cid`
)

// object is one row of sqlite_schema.
type object struct {
	typ, name, tblName, sql string
}

type column struct {
	name, typ string
	pk        int // position in the primary key, 0 if not in it
}

// tableInfo is what table_list and table_info say of a table.
type tableInfo struct {
	kind    string // table, virtual, shadow
	noRowid bool
	cols    []column
}

// fts5Shadow are the suffixes of an FTS5 table's shadow tables.
var fts5Shadow = []string{"data", "idx", "content", "docsize", "config"}

// Virtual table modules a dump can carry.
const (
	moduleFTS5      = "fts5"
	moduleFTS5Vocab = "fts5vocab" // derived from an FTS5 table: nothing to refill
)

// vtab is a virtual table and how a restore refills it.
type vtab struct {
	object
	module string
	// content is the FTS5 content option: "" (contentful: its own rows
	// are dumped), external (refilled by 'rebuild' from contentTable) or
	// contentless (cannot be read back).
	content      string
	contentTable string
}

const (
	contentOwn      = ""
	contentExternal = "external"
	contentNone     = "contentless"
)

// schema is a database's schema, sorted into what a dump writes in order.
type schema struct {
	tables   []object // ordinary tables, sqlite_schema order
	sequence bool     // sqlite_sequence exists
	vtabs    []vtab   // FTS5 tables, then derived ones
	others   []object // indexes, triggers, views
	info     map[string]*tableInfo
}

// UnsupportedError is a database the query API reader cannot write a
// restorable dump of: a virtual table of a module other than FTS5 (D1
// offers no other), or a table it cannot page through.
type UnsupportedError struct {
	Table string
	Msg   string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("querydump: table %s: %s", e.Table, e.Msg)
}

func (d *dumper) readSchema() (*schema, error) {
	res, err := d.query(schemaSQL+";\n"+columnSQL, 2)
	if err != nil {
		return nil, err
	}
	sc := &schema{info: map[string]*tableInfo{}}
	for _, row := range res[1].Rows {
		name, kind, colName, colType, ok := text4(row[0], row[1], row[3], row[4])
		wr, ok2 := smallInt(row[2])
		pk, ok3 := smallInt(row[5])
		if !ok || !ok2 || !ok3 {
			return nil, d.bad("table_info row %v has unexpected values", row)
		}
		ti := sc.info[strings.ToLower(name)]
		if ti == nil {
			ti = &tableInfo{kind: kind, noRowid: wr == 1}
			sc.info[strings.ToLower(name)] = ti
		}
		ti.cols = append(ti.cols, column{name: colName, typ: colType, pk: pk})
	}
	var objs []object
	for _, row := range res[0].Rows {
		var o object
		var ok bool
		if o.typ, o.name, o.tblName, _, ok = text4(row[0], row[1], row[2], ""); !ok {
			return nil, d.bad("sqlite_schema row %v has unexpected values", row)
		}
		if row[3] != nil {
			if o.sql, ok = row[3].(string); !ok {
				return nil, d.bad("sqlite_schema sql of %s is not text", o.name)
			}
		}
		if strings.IndexByte(o.name+o.tblName, 0) >= 0 {
			return nil, d.bad("a schema name holds a NUL byte")
		}
		objs = append(objs, o)
	}
	if err := sc.sort(objs); err != nil {
		return nil, err
	}
	return sc, nil
}

// sort files each sqlite_schema object under what the dump does with it.
func (sc *schema) sort(objs []object) error {
	shadow := map[string]bool{}
	var fts, derived []vtab
	for _, o := range objs {
		if o.typ != "table" || !isVirtual(o.sql) {
			continue
		}
		v, err := parseVirtual(o)
		if err != nil {
			return err
		}
		switch v.module {
		case moduleFTS5:
			for _, s := range fts5Shadow {
				shadow[strings.ToLower(o.name+"_"+s)] = true
			}
			fts = append(fts, v)
		default:
			derived = append(derived, v)
		}
	}
	sc.vtabs = append(fts, derived...)
	for _, o := range objs {
		lower := strings.ToLower(o.name)
		if ti := sc.info[lower]; ti != nil && ti.kind == "shadow" {
			shadow[lower] = true
		}
		skip := strings.HasPrefix(lower, "sqlite_") || strings.HasPrefix(lower, "_cf_") ||
			strings.HasPrefix(strings.ToLower(o.tblName), "_cf_") || shadow[lower] || shadow[strings.ToLower(o.tblName)]
		switch {
		case o.typ == "table" && lower == "sqlite_sequence":
			sc.sequence = true
		case skip || o.sql == "":
		case o.typ == "table" && isVirtual(o.sql):
		case o.typ == "table":
			if _, err := checkCreate(o.sql, createTable); err != nil {
				return &d1.BadAnswerError{Op: "read schema", Msg: fmt.Sprintf("table %s: %v", o.name, err)}
			}
			if ti := sc.info[lower]; ti == nil || len(ti.cols) == 0 {
				return &d1.BadAnswerError{Op: "read schema", Msg: fmt.Sprintf("table %s has no columns in table_info", o.name)}
			}
			sc.tables = append(sc.tables, o)
		case o.typ == "index" || o.typ == "trigger" || o.typ == "view":
			if _, err := checkCreate(o.sql, strings.ToUpper(o.typ)); err != nil {
				return &d1.BadAnswerError{Op: "read schema", Msg: fmt.Sprintf("%s %s: %v", o.typ, o.name, err)}
			}
			sc.others = append(sc.others, o)
		default:
			return &d1.BadAnswerError{Op: "read schema", Msg: fmt.Sprintf("object %s has unknown type %q", o.name, o.typ)}
		}
	}
	return nil
}

func isVirtual(sql string) bool {
	f := strings.Fields(sql)
	return len(f) >= 2 && strings.EqualFold(f[0], "CREATE") && strings.EqualFold(f[1], "VIRTUAL")
}

// parseVirtual reads a CREATE VIRTUAL TABLE statement's module and, for
// FTS5, its content option.
func parseVirtual(o object) (vtab, error) {
	toks, err := checkCreate(o.sql, createVirtual)
	if err != nil {
		return vtab{}, &d1.BadAnswerError{Op: "read schema", Msg: fmt.Sprintf("virtual table %s: %v", o.name, err)}
	}
	v := vtab{object: o}
	i := 0
	for i < len(toks) && !toks[i].is("USING") {
		i++
	}
	if i+1 >= len(toks) || toks[i+1].kind != 'w' {
		return vtab{}, &d1.BadAnswerError{Op: "read schema", Msg: fmt.Sprintf("virtual table %s: no USING <module>", o.name)}
	}
	v.module = strings.ToLower(toks[i+1].text)
	switch v.module {
	case moduleFTS5:
	case moduleFTS5Vocab:
		return v, nil
	default:
		return vtab{}, &UnsupportedError{Table: o.name, Msg: fmt.Sprintf("virtual table module %q: only FTS5 tables (what D1 supports) can be read back and recreated", v.module)}
	}
	for _, arg := range moduleArgs(toks[i+2:]) {
		if len(arg) >= 3 && arg[0].kind == 'w' && arg[1].text == "=" && strings.EqualFold(arg[0].text, "content") {
			v.contentTable = unquote(arg[2])
			v.content = contentExternal
			if v.contentTable == "" {
				v.content = contentNone
			}
		}
	}
	return v, nil
}

// moduleArgs splits the tokens of "( a, b = c, ... )" at its top-level commas.
func moduleArgs(toks []token) [][]token {
	if len(toks) == 0 || toks[0].text != "(" {
		return nil
	}
	var (
		args  [][]token
		cur   []token
		depth int
	)
	for _, t := range toks[1:] {
		if t.kind == 'p' {
			switch t.text {
			case "(":
				depth++
			case ")":
				if depth == 0 {
					return append(args, cur)
				}
				depth--
			case ",":
				if depth == 0 {
					args, cur = append(args, cur), nil
					continue
				}
			}
		}
		cur = append(cur, t)
	}
	return append(args, cur)
}

func text4(a, b, c, d any) (string, string, string, string, bool) {
	var out [4]string
	for i, v := range []any{a, b, c, d} {
		s, ok := v.(string)
		if !ok {
			return "", "", "", "", false
		}
		out[i] = s
	}
	return out[0], out[1], out[2], out[3], true
}

// smallInt reads a non-negative integer no larger than D1's largest value
// (a size, an offset, a column number) that crossed as a JSON number.
func smallInt(v any) (int, bool) {
	f, ok := v.(float64)
	if !ok || f != float64(int(f)) || f < 0 || f > maxValueBytes {
		return 0, false
	}
	return int(f), true
}
