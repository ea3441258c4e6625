package querydump

import (
	"fmt"
	"strings"
)

// Everything here checks text that came from the API before it goes into a
// dump: a restore runs the dump's statements, so an answer must never be
// able to add a statement of its own (an ATTACH that writes a file, a
// PRAGMA, a DELETE).

// token is one lexical token of an SQL statement; comments are dropped.
type token struct {
	// kind is 'w' for a word (keyword, bare identifier or number), 's' for
	// a '...' string, 'i' for a quoted identifier ("..", `..`, [..]) and
	// 'p' for a punctuation byte.
	kind byte
	text string
}

func (t token) is(word string) bool { return t.kind == 'w' && strings.EqualFold(t.text, word) }

func isWordByte(b byte) bool {
	return b == '_' || b == '$' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= 0x80
}

// lex splits sql into tokens. It refuses what would make a restore read
// the text differently from its source: a NUL byte, a quote or block
// comment left open, or a line comment running to the end (the ';'
// appended after the statement would be commented out).
func lex(sql string) ([]token, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, fmt.Errorf("it holds a NUL byte")
	}
	var toks []token
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			n := strings.IndexByte(sql[i:], '\n')
			if n < 0 {
				return nil, fmt.Errorf("it ends inside a -- comment")
			}
			i += n + 1
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			n := strings.Index(sql[i+2:], "*/")
			if n < 0 {
				return nil, fmt.Errorf("it ends inside a /* comment")
			}
			i += n + 4
		case c == '\'' || c == '"' || c == '`' || c == '[':
			end := c
			if c == '[' {
				end = ']'
			}
			j := i + 1
			for {
				n := strings.IndexByte(sql[j:], end)
				if n < 0 {
					return nil, fmt.Errorf("it ends inside a quoted string or identifier")
				}
				j += n + 1
				// A doubled quote is an escaped one ([..] has no escape).
				if c != '[' && j < len(sql) && sql[j] == end {
					j++
					continue
				}
				break
			}
			kind := byte('i')
			if c == '\'' {
				kind = 's'
			}
			toks = append(toks, token{kind, sql[i:j]})
			i = j
		case isWordByte(c):
			j := i + 1
			for j < len(sql) && isWordByte(sql[j]) {
				j++
			}
			toks = append(toks, token{'w', sql[i:j]})
			i = j
		default:
			toks = append(toks, token{'p', sql[i : i+1]})
			i++
		}
	}
	return toks, nil
}

// Kinds of CREATE statement a dump carries.
const (
	createTable   = "TABLE"
	createVirtual = "VIRTUAL TABLE"
	createIndex   = "INDEX"
	createView    = "VIEW"
	createTrigger = "TRIGGER"
)

// triggerBody are the words that may follow an inner "END;" in a trigger
// body (the END of a CASE): the start of the next body statement, or the
// trigger's own END.
var triggerBody = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "VALUES", "END"}

// checkCreate holds sql (from sqlite_schema) to one CREATE statement of the
// kind given, with nothing after it, and returns its tokens. sqlite_schema
// stores a statement without its closing ';', so a ';' that ends the
// statement (any ';' outside a trigger body) means a second statement.
func checkCreate(sql, kind string) ([]token, error) {
	toks, err := lex(sql)
	if err != nil {
		return nil, err
	}
	want := strings.Fields("CREATE " + kind)
	if kind == createIndex && len(toks) > 1 && toks[1].is("UNIQUE") {
		want = []string{"CREATE", "UNIQUE", "INDEX"}
	}
	if len(toks) <= len(want) {
		return nil, fmt.Errorf("it is not a CREATE %s statement", kind)
	}
	for i, w := range want {
		if !toks[i].is(w) {
			return nil, fmt.Errorf("it is not a CREATE %s statement", kind)
		}
	}
	if kind == createTrigger && !toks[len(toks)-1].is("END") {
		// A restore would read on past the statement looking for its END.
		return nil, fmt.Errorf("the trigger does not end with END")
	}
	for i, t := range toks {
		if t.kind != 'p' || t.text != ";" {
			continue
		}
		inner := kind == createTrigger && i+1 < len(toks) && (i == 0 || !toks[i-1].is("END"))
		if !inner && kind == createTrigger && i+1 < len(toks) {
			// "END;" inside a body ends a CASE; another statement may not follow.
			for _, w := range triggerBody {
				if toks[i+1].is(w) {
					inner = true
				}
			}
		}
		if !inner {
			return nil, fmt.Errorf("it holds more than one statement")
		}
	}
	return toks, nil
}

// quoteIdent double-quotes an identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// unquote returns the value of a quoted string or identifier token, and a
// bare word as it is.
func unquote(t token) string {
	s := t.text
	switch t.kind {
	case 's':
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'")
	case 'i':
		switch s[0] {
		case '"':
			return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
		case '`':
			return strings.ReplaceAll(s[1:len(s)-1], "``", "`")
		}
		return s[1 : len(s)-1]
	}
	return s
}

// literalEnd returns the end of the SQL literal that starts s[i:], in the
// shapes SQLite's quote() writes — NULL, an integer, a real (1.0e+308,
// 9.0e+999), a '...' string with ” escapes, X'..' — and CAST(X'..' AS
// TEXT), which stands for text holding a NUL byte. ok is false for anything
// else.
func literalEnd(s string, i int) (end int, ok bool) {
	switch {
	case strings.HasPrefix(s[i:], "NULL"):
		return i + 4, true
	case strings.HasPrefix(s[i:], "CAST(X'"):
		end, ok := hexEnd(s, i+len("CAST(X'"))
		if !ok || !strings.HasPrefix(s[end:], " AS TEXT)") {
			return 0, false
		}
		return end + len(" AS TEXT)"), true
	case strings.HasPrefix(s[i:], "X'"):
		return hexEnd(s, i+2)
	case i < len(s) && s[i] == '\'':
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case 0:
				return 0, false
			case '\'':
				if j+1 < len(s) && s[j+1] == '\'' {
					j++
					continue
				}
				return j + 1, true
			}
		}
		return 0, false
	}
	return numberEnd(s, i)
}

// hexEnd reads an even number of hex digits from s[i:] up to the closing
// quote, and returns the index after it.
func hexEnd(s string, i int) (int, bool) {
	j := i
	for j < len(s) && isHex(s[j]) {
		j++
	}
	if j >= len(s) || s[j] != '\'' || (j-i)%2 != 0 {
		return 0, false
	}
	return j + 1, true
}

func isHex(b byte) bool { return b >= '0' && b <= '9' || b >= 'A' && b <= 'F' || b >= 'a' && b <= 'f' }

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// numberEnd reads -?digits[.digits][e[+-]digits].
func numberEnd(s string, i int) (int, bool) {
	j := i
	if j < len(s) && s[j] == '-' {
		j++
	}
	digits := func() bool {
		k := j
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		return j > k
	}
	if !digits() {
		return 0, false
	}
	if j < len(s) && s[j] == '.' {
		j++
		if !digits() {
			return 0, false
		}
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if !digits() {
			return 0, false
		}
	}
	return j, true
}

// checkLiterals holds s to exactly n literals separated by commas.
func checkLiterals(s string, n int) error {
	i := 0
	for k := 0; k < n; k++ {
		if k > 0 {
			if i >= len(s) || s[i] != ',' {
				return fmt.Errorf("expected %d values, found %d", n, k)
			}
			i++
		}
		end, ok := literalEnd(s, i)
		if !ok {
			return fmt.Errorf("value %d is not an SQL literal", k+1)
		}
		i = end
	}
	if i != len(s) {
		return fmt.Errorf("more than %d values, or text after the last", n)
	}
	return nil
}

// checkInteger holds s to an integer literal (a rowid).
func checkInteger(s string) error {
	j := 0
	if strings.HasPrefix(s, "-") {
		j = 1
	}
	if j == len(s) || len(s) > 20 {
		return fmt.Errorf("%.40q is not an integer", s)
	}
	for ; j < len(s); j++ {
		if !isDigit(s[j]) {
			return fmt.Errorf("%.40q is not an integer", s)
		}
	}
	return nil
}
