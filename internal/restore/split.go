package restore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Statement is one SQL statement of a dump, as Split yields it.
type Statement struct {
	// Index counts statements from 1.
	Index int64
	// Offset is the byte offset of the statement's first byte in the dump.
	Offset int64
	// Size is the statement's length in bytes, leading white space
	// excluded, the closing ';' included.
	Size int64
	// Keyword is the first word, upper-cased (CREATE, INSERT, BEGIN, ...).
	Keyword string
	// Text is the statement; it is valid only during the callback and nil
	// when Size is over the Split's keep limit.
	Text []byte
}

// errStop ends a Split early without an error.
var errStop = errors.New("stop")

// split lexer states.
const (
	stNormal = iota
	stSingle
	stDouble
	stBacktick
	stBracket
	stLineComment
	stBlockComment
)

// Split reads SQL from r and calls fn for each statement, streaming: memory
// is bounded by keep (statements longer than keep are measured but their
// Text is nil). It understands quoted strings and identifiers ('..' with ”
// escapes, "..", `..`, [..]), -- and /* */ comments, and CREATE TRIGGER
// bodies (whose inner ';' end the statement only after END). Statements
// holding only comments are skipped.
func Split(r io.Reader, keep int, fn func(Statement) error) error {
	var (
		buf      = make([]byte, 64<<10)
		stmt     []byte
		size     int64
		start    int64 // offset of the statement's first non-space byte
		base     int64 // offset of buf[0] in the dump
		off      int64 // offset of the byte being read
		state    = stNormal
		prev     byte // previous byte in the current state, for -- /* */
		word     []byte
		words    int
		first    string
		second   string
		isTrig   bool
		lastWord string
		content  bool // the statement has something besides spaces and comments
		index    int64
		overflow bool
	)
	flushWord := func() {
		if len(word) == 0 {
			return
		}
		w := string(bytes.ToUpper(word))
		word = word[:0]
		words++
		switch words {
		case 1:
			first = w
		case 2:
			second = w
			if first == "CREATE" && w == "TRIGGER" {
				isTrig = true
			}
		case 3:
			if first == "CREATE" && (second == "TEMP" || second == "TEMPORARY") && w == "TRIGGER" {
				isTrig = true
			}
		}
		lastWord = w
	}
	emit := func() error {
		flushWord()
		defer func() {
			stmt, size, content, words, first, second, isTrig, lastWord, overflow = stmt[:0], 0, false, 0, "", "", false, "", false
		}()
		if !content {
			return nil
		}
		index++
		s := Statement{Index: index, Offset: start, Size: size, Keyword: first}
		if !overflow {
			s.Text = bytes.TrimRight(stmt, " \t\r\n")
		}
		return fn(s)
	}
	add := func(b byte) {
		if size == 0 && (b == ' ' || b == '\t' || b == '\r' || b == '\n') {
			return // leading space belongs to no statement
		}
		if size == 0 {
			start = off
		}
		size++
		if overflow {
			return
		}
		if len(stmt) >= keep {
			overflow, stmt = true, stmt[:0]
			return
		}
		stmt = append(stmt, b)
	}
	isWord := func(b byte) bool {
		return b == '_' || b == '$' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= 0x80
	}
	for {
		n, rerr := r.Read(buf)
		for i, b := range buf[:n] {
			off = base + int64(i)
			add(b)
			switch state {
			case stNormal:
				switch {
				case isWord(b):
					word = append(word, b)
					content = true
					prev = b
					continue
				case b == '-' && prev == '-':
					state, prev = stLineComment, 0
					continue
				case b == '*' && prev == '/':
					state, prev = stBlockComment, 0
					continue
				}
				flushWord()
				switch b {
				case '\'':
					state = stSingle
				case '"':
					state = stDouble
				case '`':
					state = stBacktick
				case '[':
					state = stBracket
				case ';':
					if isTrig && lastWord != "END" {
						break
					}
					if err := emit(); err != nil {
						if errors.Is(err, errStop) {
							return nil
						}
						return err
					}
					prev = 0
					continue
				}
				switch b {
				case ' ', '\t', '\r', '\n':
				case '-', '/':
					// may open a comment: content only if it does not
				default:
					content = true
					lastWord = ""
				}
				if (prev == '-' && b != '-') || (prev == '/' && b != '*') {
					content = true
					lastWord = ""
				}
				if state != stNormal {
					content = true
					lastWord = ""
				}
			case stSingle:
				if b == '\'' {
					state = stNormal // '' re-opens at once: same split
				}
			case stDouble:
				if b == '"' {
					state = stNormal
				}
			case stBacktick:
				if b == '`' {
					state = stNormal
				}
			case stBracket:
				if b == ']' {
					state = stNormal
				}
			case stLineComment:
				if b == '\n' {
					state = stNormal
				}
			case stBlockComment:
				if b == '/' && prev == '*' {
					state = stNormal
					prev = 0
					continue
				}
			}
			prev = b
		}
		base += int64(n)
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				return fmt.Errorf("read dump: %w", rerr)
			}
			if prev == '-' || prev == '/' {
				content = true
			}
			if state == stSingle || state == stDouble || state == stBacktick || state == stBracket {
				return fmt.Errorf("dump ends inside a quoted string, identifier or comment (statement %d at byte %d)", index+1, start)
			}
			if err := emit(); err != nil && !errors.Is(err, errStop) {
				return err
			}
			return nil
		}
	}
}
