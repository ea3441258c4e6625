package restore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxLoadStatementBytes bounds one statement of a dump (SQLite's
// SQLITE_LIMIT_SQL_LENGTH while loading, and what Split holds in memory).
// D1 rows are at most 2 MB, 4 MB as a hex BLOB literal, so no statement of
// a D1 dump comes near it.
const MaxLoadStatementBytes = 8 << 20

// Statement is one SQL statement of a dump, as Split yields it.
type Statement struct {
	// Index counts statements from 1.
	Index int64
	// Offset is the byte offset of the statement's first byte in the dump,
	// white space before it left out (comments before it belong to it).
	Offset int64
	// Size is the statement's length in bytes, its closing ';' included.
	Size int64
	// Text is the statement; it is valid only during the callback.
	Text []byte
}

// SplitError: the dump cannot be cut into statements. Nothing that follows
// the statement it names was read.
type SplitError struct {
	Statement int64 // the statement's index
	Offset    int64 // the byte at fault, or the statement's first byte
	Msg       string
}

func (e *SplitError) Error() string {
	return fmt.Sprintf("statement %d (at byte %d): %s", e.Statement, e.Offset, e.Msg)
}

// errStop ends a Split early without an error.
var errStop = errors.New("stop")

// memoMax bounds the segments whose classification is remembered, and
// memoEntries the number remembered: a long string full of short
// repeated segments ("a;a;a;...") costs one lookup per ';'.
const (
	memoMax     = 64
	memoEntries = 1 << 16
)

// Split reads SQL from r and calls fn for each statement, in order. A
// statement ends at the first ';' that makes it complete by SQLite's own
// rule (sqlite3_complete), as the sqlite3 shell and D1's import cut them.
// Memory is bounded by MaxLoadStatementBytes. Time is linear in the input:
// a ';' costs one sqlite3_complete call over the bytes since the previous
// ';' (behind a representative of under 40 bytes, see complete.go), and
// one that does not end the statement up to 7 more, each with a probe of
// under 30 bytes; a segment of up to 64 bytes seen before in the same
// state costs a map lookup. BenchmarkSplit measures hostile input at
// up to about 10 times the cost of an ordinary dump per byte, the same at
// 1 and 4 MiB.
// Statements holding only ';' are skipped. A NUL byte, a statement over
// MaxLoadStatementBytes or a dump ending inside a quoted string or /*
// comment is a *SplitError. An error from fn ends the Split and is
// returned.
func Split(r io.Reader, fn func(Statement) error) error {
	o := newOracle()
	defer o.close()
	cl := classes()
	var (
		buf      = make([]byte, 64<<10)
		stmt     []byte // bytes since the end of the previous statement
		segStart int    // where the bytes after the last ';' start in stmt
		st       int    // the state of stmt[:segStart]
		base     int64  // offset of stmt[0] in the dump
		read     int64  // bytes read
		index    int64
		memo     = map[string]int{}
	)
	emit := func(text []byte) error {
		lead := len(text) - len(bytes.TrimLeft(text, " \t\n\f\r"))
		text = text[lead:]
		if len(text) == 0 || len(text) == 1 && text[0] == ';' {
			return nil
		}
		index++
		return fn(Statement{Index: index, Offset: base + int64(lead), Size: int64(len(text)), Text: text})
	}
	// step classifies stmt after a ';' was appended: -1 when it ends the
	// statement, else its state.
	step := func() int {
		seg := stmt[segStart:]
		var key string
		if len(seg) <= memoMax {
			key = string(rune(st)) + string(seg)
			if k, ok := memo[key]; ok {
				return k
			}
		}
		o.load([]byte(cl.states[st].rep), seg)
		k := -1
		if !o.complete("") {
			k = cl.classify(o)
		}
		if key != "" {
			if len(memo) >= memoEntries {
				clear(memo)
			}
			memo[key] = k
		}
		return k
	}
	tooLong := func() error {
		return &SplitError{Statement: index + 1, Offset: base, Msg: fmt.Sprintf("the statement is over %d bytes, which no dump holds (D1 rows are at most 2 MB)", MaxLoadStatementBytes)}
	}
	for {
		n, rerr := r.Read(buf)
		chunk := buf[:n]
		if i := bytes.IndexByte(chunk, 0); i >= 0 {
			return &SplitError{Statement: index + 1, Offset: read + int64(i), Msg: "a NUL byte, which SQL text cannot hold"}
		}
		read += int64(n)
		for len(chunk) > 0 {
			j := bytes.IndexByte(chunk, ';')
			if j < 0 {
				stmt = append(stmt, chunk...)
				break
			}
			stmt = append(stmt, chunk[:j+1]...)
			chunk = chunk[j+1:]
			if len(stmt) > MaxLoadStatementBytes {
				return tooLong()
			}
			if k := step(); k >= 0 {
				st, segStart = k, len(stmt)
				continue
			}
			if err := emit(stmt); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
			base += int64(len(stmt))
			stmt, segStart, st = stmt[:0], 0, 0
		}
		if len(stmt) > MaxLoadStatementBytes {
			return tooLong()
		}
		if rerr == nil {
			continue
		}
		if !errors.Is(rerr, io.EOF) {
			return fmt.Errorf("read dump: %w", rerr)
		}
		return finish(o, cl, st, stmt, segStart, func() error {
			err := emit(bytes.TrimRight(stmt, " \t\n\f\r"))
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}, &SplitError{Statement: index + 1, Offset: base, Msg: "the dump ends inside a quoted string, quoted identifier or comment"})
	}
}

// finish handles the text after the last statement: nothing (white space
// and comments), a last statement without its ';' (emitted: SQLite runs
// one), or an unterminated string or comment (the open error).
func finish(o *oracle, cl *classifier, st int, stmt []byte, segStart int, emit func() error, open error) error {
	if len(bytes.TrimLeft(stmt, " \t\n\f\r")) == 0 {
		return nil
	}
	// A newline ends a -- comment, as the end of the dump does.
	o.load([]byte(cl.states[st].rep), append(stmt[segStart:len(stmt):len(stmt)], '\n'))
	if o.complete("") {
		return emit()
	}
	switch s := cl.states[cl.classify(o)]; {
	case s.open:
		return open
	case s.empty:
		return nil
	}
	return emit()
}
