package querydump

import (
	"fmt"
	"strings"
)

// slowRow reads one row column by column: each value's type and size, the
// numbers as literals, text and BLOBs as hex in chunks (exact whatever the
// bytes, and within D1's value limit however large the row). A row that is
// gone, or changed under the reader, is left out and the read is marked
// changed: the bookmark has moved too.
func (d *dumper) slowRow(t *table, keys []string) error {
	where := " FROM " + quoteIdent(t.name) + " WHERE " + t.keyEq(keys)
	parts := make([]string, len(t.cols))
	for i, c := range t.cols {
		parts[i] = fmt.Sprintf("SELECT %d, typeof(%s), length(CAST(%s AS BLOB)), CASE WHEN typeof(%s) IN ('text','blob') THEN NULL ELSE quote(%s) END%s", i, c, c, c, c, where)
	}
	rows, err := d.unionAll(parts, nil)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		d.stats.Changed = true
		return nil
	}
	if len(rows) != len(t.cols) {
		return d.bad("table %s: %d column answers for %d columns", t.name, len(rows), len(t.cols))
	}
	type chunk struct{ col, off, n int }
	var (
		vals   = make([]string, len(t.cols))
		kinds  = make([]string, len(t.cols))
		seen   = make([]bool, len(t.cols))
		chunks []chunk
	)
	for _, row := range rows {
		i, ok := smallInt(row[0])
		typ, ok2 := row[1].(string)
		if !ok || !ok2 || i >= len(t.cols) || seen[i] {
			return d.bad("table %s: unexpected column answer %v", t.name, row)
		}
		seen[i], kinds[i] = true, typ
		switch typ {
		case "null", "integer", "real":
			lit, ok := row[3].(string)
			if !ok || checkLiterals(lit, 1) != nil {
				return d.bad("table %s: column %d: a %s value that is not an SQL literal", t.name, i, typ)
			}
			vals[i] = lit
		case "text", "blob":
			size, ok := smallInt(row[2])
			if !ok {
				return d.bad("table %s: column %d: a %s of unexpected size %v", t.name, i, typ, row[2])
			}
			for off := 1; off <= size; off += d.opts.ChunkBytes {
				chunks = append(chunks, chunk{i, off, min(d.opts.ChunkBytes, size-off+1)})
			}
		default:
			return d.bad("table %s: column %d has unknown type %q", t.name, i, typ)
		}
	}
	parts, costs := make([]string, len(chunks)), make([]int, len(chunks))
	for k, c := range chunks {
		parts[k] = fmt.Sprintf("SELECT %d, %d, hex(substr(CAST(%s AS BLOB), %d, %d))%s", c.col, c.off, t.cols[c.col], c.off, c.n, where)
		costs[k] = 2 * c.n
	}
	got, err := d.unionAll(parts, costs)
	if err != nil {
		return err
	}
	hexes := map[[2]int]string{}
	for _, row := range got {
		i, ok := smallInt(row[0])
		off, ok2 := smallInt(row[1])
		h, ok3 := row[2].(string)
		if !ok || !ok2 || !ok3 {
			return d.bad("table %s: unexpected chunk answer", t.name)
		}
		hexes[[2]int{i, off}] = h
	}
	hexOf := make([]strings.Builder, len(t.cols))
	for _, c := range chunks {
		h, ok := hexes[[2]int{c.col, c.off}]
		if !ok || len(h) != 2*c.n {
			// The row is gone or its value shrank since its size was read.
			d.stats.Changed = true
			return nil
		}
		for k := 0; k < len(h); k++ {
			if !isHex(h[k]) {
				return d.bad("table %s: a chunk is not hex", t.name)
			}
		}
		hexOf[c.col].WriteString(h)
	}
	for i, k := range kinds {
		switch {
		case k == "text" && hexOf[i].Len() == 0:
			vals[i] = "''"
		case k == "text":
			vals[i] = "CAST(X'" + hexOf[i].String() + "' AS TEXT)"
		case k == "blob":
			vals[i] = "X'" + hexOf[i].String() + "'"
		}
	}
	return d.emitRow(t, keys, strings.Join(vals, ","))
}

// unionAll runs the SELECTs of parts joined by UNION ALL, as few requests as
// D1's statement limit and the page size (the sum of costs, when given)
// allow, and returns every row.
func (d *dumper) unionAll(parts []string, costs []int) ([][]any, error) {
	const maxTerms = 100 // well under SQLite's 500 compound terms
	var out [][]any
	for start := 0; start < len(parts); {
		end, size, cost := start, 0, 0
		for end < len(parts) && end-start < maxTerms {
			add := len(parts[end]) + len(" UNION ALL ")
			c := 0
			if costs != nil {
				c = costs[end]
			}
			if end > start && (size+add > maxStatementBytes || cost+c > d.opts.PageBytes) {
				break
			}
			size, cost, end = size+add, cost+c, end+1
		}
		res, err := d.query(strings.Join(parts[start:end], " UNION ALL "), 1)
		if err != nil {
			return nil, err
		}
		out = append(out, res[0].Rows...)
		start = end
	}
	return out, nil
}
