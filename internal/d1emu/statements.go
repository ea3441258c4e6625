package d1emu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// MaxStatementBytes is D1's documented maximum SQL statement length
// (SQLite's SQLITE_LIMIT_SQL_LENGTH in D1: 100,000 bytes).
const MaxStatementBytes = 100_000

// MessageTooBig is how D1 refuses a statement over MaxStatementBytes.
const MessageTooBig = "statement too long: SQLITE_TOOBIG"

// tooLongError is a statement over MaxStatementBytes.
type tooLongError struct {
	index int64 // 1-based
	size  int   // bytes, or at least that many when over is set
	over  bool  // refused before its end was read
}

func (e *tooLongError) Error() string {
	if e.over {
		return fmt.Sprintf("%s (statement %d is over %d bytes)", MessageTooBig, e.index, MaxStatementBytes)
	}
	return fmt.Sprintf("%s (statement %d is %d bytes; the limit is %d)", MessageTooBig, e.index, e.size, MaxStatementBytes)
}

// statementReader yields the statements of SQL text one at a time. A
// statement ends at a ';' that makes the text so far complete by SQLite's
// own sqlite3_complete (which knows strings, comments and trigger bodies),
// so the emulator shares no parsing code with its clients. A statement's
// size is counted from its first token to its ';' inclusive; one over
// MaxStatementBytes is refused without reading it whole.
type statementReader struct {
	br      *bufio.Reader
	tls     *libc.TLS
	buf     []byte
	n       int64 // statements returned
	largest int   // bytes of the largest statement seen, refused ones included
}

func newStatementReader(r io.Reader) *statementReader {
	return &statementReader{br: bufio.NewReaderSize(r, 64<<10), tls: libc.NewTLS()}
}

func (sr *statementReader) Close() { sr.tls.Close() }

func (sr *statementReader) complete(s []byte) bool {
	p, err := libc.CString(string(s))
	if err != nil {
		return false
	}
	defer libc.Xfree(sr.tls, p)
	return sqlite3.Xsqlite3_complete(sr.tls, p) != 0
}

// next returns the next statement, trimmed, with its ';' when it has one;
// io.EOF after the last.
func (sr *statementReader) next() (string, error) {
	for {
		chunk, err := sr.br.ReadSlice(';')
		sr.buf = append(sr.buf, chunk...)
		if n := len(sr.buf); n > 0 && sr.buf[n-1] == ';' && sr.complete(sr.buf) {
			stmt := strings.TrimSpace(string(sr.buf))
			sr.buf = sr.buf[:0]
			if onlyComments(strings.TrimSuffix(stmt, ";")) {
				continue // an empty statement
			}
			return sr.take(stmt)
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			if len(sr.buf)-leadLen(sr.buf) > MaxStatementBytes {
				sr.largest = max(sr.largest, len(sr.buf)-leadLen(sr.buf))
				return "", &tooLongError{index: sr.n + 1, size: len(sr.buf), over: true}
			}
		case errors.Is(err, io.EOF):
			rest := strings.TrimSpace(string(sr.buf))
			sr.buf = sr.buf[:0]
			if rest == "" || onlyComments(rest) {
				return "", io.EOF
			}
			return sr.take(rest)
		default:
			return "", err
		}
	}
}

func (sr *statementReader) take(stmt string) (string, error) {
	size := len(skipComments(stmt))
	sr.largest = max(sr.largest, size)
	sr.n++
	if size > MaxStatementBytes {
		return "", &tooLongError{index: sr.n, size: size}
	}
	return stmt, nil
}

// leadLen is the length of the whitespace and comments b starts with.
func leadLen(b []byte) int {
	s := string(b[:min(len(b), 4096)]) // comments this long before a statement are not worth the copy
	return len(s) - len(skipComments(s))
}

// skipComments returns s without its leading whitespace and SQL comments
// ("" if that is all it holds).
func skipComments(s string) string {
	const space = " \t\n\f\r"
	for s = strings.TrimLeft(s, space); ; s = strings.TrimLeft(s, space) {
		var end string
		switch {
		case strings.HasPrefix(s, "--"):
			end = "\n"
		case strings.HasPrefix(s, "/*"):
			end = "*/"
		default:
			return s
		}
		i := strings.Index(s, end)
		if i < 0 {
			return ""
		}
		s = s[i+len(end):]
	}
}

// onlyComments reports whether s holds nothing but SQL comments.
func onlyComments(s string) bool { return skipComments(s) == "" }

// isTransactionControl reports whether stmt opens, ends or marks a
// transaction, which D1 refuses in imports and queries.
func isTransactionControl(stmt string) bool {
	stmt = skipComments(stmt)
	end := strings.IndexFunc(stmt, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	if end < 0 {
		end = len(stmt)
	}
	switch strings.ToUpper(stmt[:end]) {
	case "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
		return true
	}
	return false
}
