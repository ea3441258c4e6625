package restore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// describe reads what rewriting needs of a table; why says why it cannot
// be rewritten.
func describe(ctx context.Context, conn *sql.Conn, name string) (t table, why string) {
	var typ string
	var wr int
	if err := conn.QueryRowContext(ctx, `SELECT name, type, wr FROM pragma_table_list(?) WHERE schema = 'main'`, name).Scan(&t.name, &typ, &wr); err != nil {
		return t, fmt.Sprintf("table %s cannot be described: %v", name, err)
	}
	t.virtual = typ == "virtual"
	var triggers int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE`, t.name).Scan(&triggers); err != nil || triggers > 0 {
		return t, fmt.Sprintf("table %s has triggers at that point of the dump, which the UPDATEs would fire", t.name)
	}
	rows, err := conn.QueryContext(ctx, `SELECT name, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid`, t.name)
	if err != nil {
		return t, fmt.Sprintf("table %s cannot be described: %v", t.name, err)
	}
	defer rows.Close()
	var all []string
	pks := map[int]string{}
	for rows.Next() {
		var c string
		var pk, hidden int
		if err := rows.Scan(&c, &pk, &hidden); err != nil {
			return t, err.Error()
		}
		all = append(all, lower(c))
		if hidden == 0 {
			t.cols = append(t.cols, c)
		}
		if pk > 0 {
			pks[pk] = c
		}
	}
	if err := rows.Err(); err != nil {
		return t, err.Error()
	}
	if wr == 1 {
		for i := 1; i <= len(pks); i++ {
			t.pk = append(t.pk, pks[i])
		}
		return t, ""
	}
	for _, alias := range []string{"rowid", "_rowid_", "oid"} {
		if !slices.Contains(all, alias) {
			t.rowid = alias
			return t, ""
		}
	}
	return t, fmt.Sprintf("table %s has columns named rowid, _rowid_ and oid, so its rowid has no name", t.name)
}

// pkKey builds the WHERE condition of a WITHOUT ROWID row from its primary
// key values as the pre-update hook saw them (vals, by column), read back
// from the table as literals.
func pkKey(ctx context.Context, conn *sql.Conn, t table, vals []any) (string, error) {
	rows, err := conn.QueryContext(ctx, `SELECT cid FROM pragma_table_xinfo(?) WHERE pk > 0 ORDER BY pk`, t.name)
	if err != nil {
		return "", err
	}
	var conds []string
	var args []any
	for i := 0; rows.Next(); i++ {
		var cid int
		if err := rows.Scan(&cid); err != nil || cid >= len(vals) || i >= len(t.pk) {
			rows.Close()
			return "", fmt.Errorf("its primary key cannot be read")
		}
		conds = append(conds, quoteIdent(t.pk[i])+" = ?")
		args = append(args, vals[cid])
	}
	rows.Close()
	pk, err := readRow(ctx, conn, t.name, t.pk, strings.Join(conds, " AND "), args...)
	if err != nil {
		return "", fmt.Errorf("its primary key cannot be read back: %v", err)
	}
	conds = conds[:0]
	for i, c := range t.pk {
		lit := literal(pk[i])
		if len(lit) > 1024 {
			return "", fmt.Errorf("its primary key value in %s is too long to key UPDATEs with", c)
		}
		conds = append(conds, quoteIdent(c)+" = "+lit)
	}
	return strings.Join(conds, " AND "), nil
}

// readRow reads the given columns of the one row key finds (a WHERE
// condition, with args), each as its type and its quote() (numbers) or
// exact bytes (text, blob). One column per query: a row may have as many
// columns as a result set may.
func readRow(ctx context.Context, conn *sql.Conn, table string, cols []string, key string, args ...any) ([]value, error) {
	vals := make([]value, len(cols))
	for i, c := range cols {
		q := quoteIdent(c)
		rows, err := conn.QueryContext(ctx, "SELECT typeof("+q+"), CASE WHEN typeof("+q+") IN ('integer', 'real') THEN quote("+q+") ELSE CAST("+q+" AS BLOB) END FROM "+quoteIdent(table)+" WHERE "+key, args...)
		if err != nil {
			return nil, err
		}
		n := 0
		for rows.Next() {
			if n++; n == 1 {
				err = rows.Scan(&vals[i].typ, &vals[i].b)
			}
		}
		if rerr := rows.Close(); err == nil {
			err = rerr
		}
		switch {
		case err != nil:
			return nil, err
		case n != 1:
			return nil, fmt.Errorf("%d rows", n)
		}
	}
	return vals, nil
}

// chunk builds the statements that make the row again, each at most
// splitTarget bytes: an INSERT with the largest text and BLOB values left
// out until it fits, then UPDATEs appending those values piece by piece.
func (r row) chunk() ([]string, string) {
	t := r.t
	lits := make([]string, len(r.vals))
	for i, v := range r.vals {
		lits[i] = literal(v)
	}
	grow := make([]bool, len(r.vals))
	insert := func() string {
		cols, vals := []string{}, []string{}
		if r.rowid != "" {
			cols, vals = append(cols, t.rowid), append(vals, r.rowid)
		}
		for i, c := range t.cols {
			cols = append(cols, quoteIdent(c))
			switch {
			case !grow[i]:
				vals = append(vals, lits[i])
			case r.vals[i].typ == "text":
				vals = append(vals, "'x'") // the marker
			default:
				vals = append(vals, "X''")
			}
		}
		return "INSERT INTO " + quoteIdent(t.name) + " (" + strings.Join(cols, ",") + ") VALUES(" + strings.Join(vals, ",") + ");"
	}
	order := make([]int, len(lits))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(lits[b]) - len(lits[a]) })
	for _, i := range order {
		if len(insert()) <= splitTarget {
			break
		}
		if (r.vals[i].typ == "text" || r.vals[i].typ == "blob") && !slices.Contains(t.pk, t.cols[i]) {
			grow[i] = true
		}
	}
	stmts := []string{insert()}
	for i, g := range grow {
		if g {
			stmts = append(stmts, appendValue(quoteIdent(t.name), quoteIdent(t.cols[i]), r.key, r.vals[i])...)
		}
	}
	for _, s := range stmts {
		if len(s) > splitTarget {
			return nil, "its numbers and key are too long for one statement"
		}
	}
	return stmts, ""
}

// appendValue makes the UPDATEs that grow a column from its marker (text)
// or empty BLOB to v.
func appendValue(table, col, key string, v value) []string {
	head := "UPDATE " + table + " SET " + col + " = "
	where := " WHERE " + key + ";"
	var out []string
	b := v.b
	switch {
	case v.typ == "blob":
		n := max((splitTarget-len(head)-len(col)-len("CAST( || X'' AS BLOB)")-len(where))/2, 1)
		for len(b) > 0 {
			k := min(n, len(b))
			out = append(out, head+"CAST("+col+" || X'"+strings.ToUpper(hex.EncodeToString(b[:k]))+"' AS BLOB)"+where)
			b = b[k:]
		}
		return out
	case plainText(b):
		budget := max(splitTarget-len(head)-len(col)-len(" || ''")-len(where), 8)
		for len(b) > 0 {
			var lit strings.Builder
			k := 0
			for k < len(b) {
				r, size := utf8.DecodeRune(b[k:])
				esc := string(b[k : k+size])
				if r == '\'' {
					esc = "''"
				}
				if lit.Len()+len(esc) > budget && k > 0 {
					break
				}
				lit.WriteString(esc)
				k += size
			}
			out = append(out, head+col+" || '"+lit.String()+"'"+where)
			b = b[k:]
		}
	default:
		n := max((splitTarget-len(head)-len(col)-len(" || CAST(X'' AS TEXT)")-len(where))/2, 1)
		for len(b) > 0 {
			k := min(n, len(b))
			out = append(out, head+col+" || CAST(X'"+strings.ToUpper(hex.EncodeToString(b[:k]))+"' AS TEXT)"+where)
			b = b[k:]
		}
	}
	// Strip the marker. substr counts bytes in a BLOB (in text it would
	// stop at a NUL).
	return append(out, head+"CAST(substr(CAST("+col+" AS BLOB), 2) AS TEXT)"+where)
}

// replay runs the rewritten statements in the scratch database and checks
// that the row reads back as it was; why is "" when it does.
func (r row) replay(ctx context.Context, conn *sql.Conn, stmts []string) string {
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Sprintf("rewritten, it fails: %v", err)
		}
	}
	got, err := readRow(ctx, conn, r.t.name, r.t.cols, r.key)
	if err != nil {
		return fmt.Sprintf("rewritten, its row cannot be read back: %v", err)
	}
	for i, v := range got {
		if v.typ != r.vals[i].typ || !bytes.Equal(v.b, r.vals[i].b) {
			return fmt.Sprintf("rewritten, column %s does not read back the same", r.t.cols[i])
		}
	}
	return ""
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// literal is v as an SQL literal that reads back as v.
func literal(v value) string {
	switch v.typ {
	case "integer", "real":
		return string(v.b)
	case "text":
		if plainText(v.b) {
			return "'" + strings.ReplaceAll(string(v.b), "'", "''") + "'"
		}
		return "CAST(X'" + strings.ToUpper(hex.EncodeToString(v.b)) + "' AS TEXT)"
	case "blob":
		return "X'" + strings.ToUpper(hex.EncodeToString(v.b)) + "'"
	}
	return "NULL"
}

// plainText: valid UTF-8 without control characters, which goes into the
// file D1 reads as a quoted literal; other text goes through a BLOB.
func plainText(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexFunc(b, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0
}
