package restore

import (
	"fmt"
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Statements are delimited by SQLite's own rule, sqlite3_complete: a
// statement ends at the first ';' after which the text so far is complete
// (it knows quotes, comments and CREATE TRIGGER ... END bodies). Asking it
// about the whole statement at every ';' costs the statement's length each
// time, which is quadratic for a long string full of ';'. So after each ';'
// that does not end the statement, the text read so far is replaced by a
// short text that sqlite3_complete cannot tell apart from it, whatever
// follows: a representative of its state. The representatives are texts
// that put sqlite3_complete in each of the states it can be in at a ';'
// (inside which quote or comment, after which keywords); which one applies
// is found by asking sqlite3_complete about the text followed by a few
// probe suffixes. No byte of the dump is ever interpreted here: SQLite does
// all the reading, this file only chooses what to ask it. Should SQLite's
// rule ever have a state no representative stands for,
// TestSplitAgreesWithSQLite fails: it compares Split with asking about
// whole texts, and finds each text's state by its full probe signature.

// oracle asks sqlite3_complete about texts assembled in a reusable buffer.
type oracle struct {
	tls *libc.TLS
	buf []byte // the text
	n   int    // length of the loaded text, before any probe
}

func newOracle() *oracle { return &oracle{tls: libc.NewTLS()} }

func (o *oracle) close() { o.tls.Close() }

// load sets the text to a followed by b.
func (o *oracle) load(a, b []byte) {
	o.buf = append(append(o.buf[:0], a...), b...)
	o.n = len(o.buf)
}

// complete reports whether SQLite considers the loaded text followed by
// probe complete.
func (o *oracle) complete(probe string) bool {
	o.buf = append(o.buf[:o.n], probe...)
	// SQLite reads C memory: CString copies the text there, NUL-terminated
	// (Split refuses NULs), straight from the buffer, which stays unchanged
	// meanwhile.
	p, err := libc.CString(unsafe.String(unsafe.SliceData(o.buf), len(o.buf)))
	if err != nil {
		panic(err) // out of memory
	}
	defer libc.Xfree(o.tls, p)
	return sqlite3.Xsqlite3_complete(o.tls, p) != 0
}

// A state is one of sqlite3_complete's states between two bytes of a
// statement: outside any token (in one of its keyword states) or inside a
// quoted string, quoted identifier or comment that started in one of them.
type state struct {
	rep string // a text that leaves sqlite3_complete in this state
	// open is true inside a string, quoted identifier or /* comment: a
	// dump must not end there.
	open bool
	// empty is true when nothing but white space and comments was seen:
	// the statement has not started.
	empty bool
}

// Keyword states of complete.c: before anything, after an ordinary token,
// after EXPLAIN, after CREATE, inside a trigger body, after its ';', after
// its "; END".
var keywordReps = []string{"", "x ", "EXPLAIN ", "CREATE ", "CREATE TRIGGER t ", "CREATE TRIGGER t BEGIN x;", "CREATE TRIGGER t BEGIN x; END "}

// Token openers: what can be open at a ';' that does not end a statement.
var openers = []string{"'", `"`, "`", "[", "/*", "--"}

// Probes: a closer for each opener (or none), then a suffix whose
// completeness depends on the keyword state reached.
var (
	closers = []string{"", "'", `"`, "`", "]", "*/", "\n"}
	tails   = []string{";", " END;", "; END;", " CREATE TRIGGER x;", " TRIGGER x;", " EXPLAIN CREATE TRIGGER x;"}
)

// classifier identifies the state of a text by a decision tree of probes.
type classifier struct {
	states []state // states[0] is the state of an empty text
	probes []string
	// nodes: a probe to ask, then the node (>= 0) or state (-1 - index) to
	// go to when the answer is false ([0]) or true ([1]).
	nodes []node
}

type node struct {
	probe int
	next  [2]int
}

// classes are built once, by asking SQLite about the representatives.
var classes = sync.OnceValue(func() *classifier {
	o := newOracle()
	defer o.close()
	c := &classifier{}
	for _, cl := range closers {
		for _, t := range tails {
			c.probes = append(c.probes, cl+t)
		}
	}
	type cand struct {
		state
		sig []bool
	}
	var cands []cand
	add := func(s state) {
		o.load([]byte(s.rep), nil)
		sig := make([]bool, len(c.probes))
		for i, p := range c.probes {
			sig[i] = o.complete(p)
		}
		for _, k := range cands {
			if equalSig(k.sig, sig) {
				// Indistinguishable by every probe: the same state.
				return
			}
		}
		cands = append(cands, cand{s, sig})
	}
	for i, k := range keywordReps {
		add(state{rep: k, empty: i == 0})
	}
	for _, k := range keywordReps {
		for _, op := range openers {
			add(state{rep: k + op, open: op != "--", empty: k == "" && (op == "/*" || op == "--")})
		}
	}
	all := make([]int, len(cands))
	for i, k := range cands {
		c.states = append(c.states, k.state)
		all[i] = i
	}
	sig := func(state, probe int) bool { return cands[state].sig[probe] }
	c.build(all, sig)
	return c
})

func equalSig(a, b []bool) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// build adds the subtree telling the states apart and returns its
// reference: a node index, or -1 - state for a single state.
func (c *classifier) build(states []int, sig func(state, probe int) bool) int {
	if len(states) == 1 {
		return -1 - states[0]
	}
	best, bestMax := -1, len(states)
	for p := range c.probes {
		n := 0
		for _, s := range states {
			if sig(s, p) {
				n++
			}
		}
		if m := max(n, len(states)-n); n > 0 && m < bestMax {
			best, bestMax = p, m
		}
	}
	if best < 0 {
		// Distinct signatures always differ on some probe.
		panic(fmt.Sprintf("restore: states %v cannot be told apart", states))
	}
	var split [2][]int
	for _, s := range states {
		b := 0
		if sig(s, best) {
			b = 1
		}
		split[b] = append(split[b], s)
	}
	i := len(c.nodes)
	c.nodes = append(c.nodes, node{probe: best})
	f := c.build(split[0], sig)
	t := c.build(split[1], sig)
	c.nodes[i].next = [2]int{f, t}
	return i
}

// classify returns the state of the text loaded in o, which is not
// complete.
func (c *classifier) classify(o *oracle) int {
	ref := 0
	for ref >= 0 {
		n := c.nodes[ref]
		b := 0
		if o.complete(c.probes[n.probe]) {
			b = 1
		}
		ref = n.next[b]
	}
	return -1 - ref
}
