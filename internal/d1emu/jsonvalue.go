package d1emu

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// D1 answers queries from JavaScript, so values cross as JSON.stringify
// writes them: every number is a float64 (integers beyond 2^53 lose
// precision), a BLOB is an array of byte values, ±Infinity is null.

// resultWriter renders the rows of each statement: objects for /query,
// {"columns","rows"} for /raw. It fails once the rendered rows of the
// request pass the response size limit.
type resultWriter struct {
	raw   bool
	limit int
	total int    // bytes rendered by earlier statements
	buf   []byte // the current statement's rows
	keys  [][]byte
	pick  []int
}

// begin starts a statement's rows. For /query, a column name that repeats
// keeps its first position and its last value, as a JavaScript object does.
func (w *resultWriter) begin(cols []string) {
	w.buf = nil
	if w.raw {
		w.buf = append(w.buf, `{"columns":[`...)
		for i, c := range cols {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.buf = appendJSString(w.buf, c)
		}
		w.buf = append(w.buf, `],"rows":[`...)
		return
	}
	w.keys, w.pick = w.keys[:0], w.pick[:0]
	seen := map[string]int{}
	for i, c := range cols {
		if k, ok := seen[c]; ok {
			w.pick[k] = i
			continue
		}
		seen[c] = len(w.keys)
		w.keys = append(w.keys, append(appendJSString(nil, c), ':'))
		w.pick = append(w.pick, i)
	}
	w.buf = append(w.buf, '[')
}

// row renders the statement's current row.
func (w *resultWriter) row(st liteStmt, cols []string) error {
	if w.buf[len(w.buf)-1] != '[' {
		w.buf = append(w.buf, ',')
	}
	if w.raw {
		w.buf = append(w.buf, '[')
		for i := range cols {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.buf = appendJSValue(w.buf, st.value(i))
		}
		w.buf = append(w.buf, ']')
	} else {
		w.buf = append(w.buf, '{')
		for k, key := range w.keys {
			if k > 0 {
				w.buf = append(w.buf, ',')
			}
			w.buf = append(w.buf, key...)
			w.buf = appendJSValue(w.buf, st.value(w.pick[k]))
		}
		w.buf = append(w.buf, '}')
	}
	if w.total+len(w.buf) > w.limit {
		return &queryError{7500, fmt.Sprintf("D1_ERROR: the result is over the %d-byte response limit; read it in pages", w.limit)}
	}
	return nil
}

// end closes the statement's rows and returns them.
func (w *resultWriter) end() []byte {
	if w.raw {
		w.buf = append(w.buf, "]}"...)
	} else {
		w.buf = append(w.buf, ']')
	}
	w.total += len(w.buf)
	return w.buf
}

func appendJSValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case int64:
		return appendJSNumber(b, float64(v))
	case float64:
		return appendJSNumber(b, v)
	case string:
		return appendJSString(b, v)
	case []byte:
		b = append(b, '[')
		for i, c := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(c), 10)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

// appendJSNumber writes f as JSON.stringify does (which encoding/json
// matches for finite values).
func appendJSNumber(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 0) || math.IsNaN(f):
		return append(b, "null"...)
	case f == 0:
		return append(b, '0') // -0 too
	}
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7, as JavaScript writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
