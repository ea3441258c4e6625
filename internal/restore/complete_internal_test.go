package restore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// naiveSplit is Split without representatives: at every ';' it asks
// sqlite3_complete about the whole statement so far, and at the end it
// identifies the state of the whole rest by its full probe signature. It
// is quadratic, and the reference Split must agree with.
func naiveSplit(t *testing.T, sql string) (stmts []string, open bool) {
	t.Helper()
	o := newOracle()
	defer o.close()
	cl := classes()
	start := 0
	for i := 0; i < len(sql); i++ {
		if sql[i] != ';' {
			continue
		}
		o.load([]byte(sql[start:i+1]), nil)
		if o.complete("") {
			if s := strings.TrimLeft(sql[start:i+1], " \t\n\f\r"); s != ";" {
				stmts = append(stmts, s)
			}
			start = i + 1
		}
	}
	rest := sql[start:]
	if strings.TrimLeft(rest, " \t\n\f\r") == "" {
		return stmts, false
	}
	o.load([]byte(rest+"\n"), nil)
	if o.complete("") {
		return append(stmts, strings.TrimRight(strings.TrimLeft(rest, " \t\n\f\r"), " \t\n\f\r")), false
	}
	k := stateOf(t, o, cl)
	switch s := cl.states[k]; {
	case s.open:
		return stmts, true
	case s.empty:
		return stmts, false
	}
	return append(stmts, strings.TrimRight(strings.TrimLeft(rest, " \t\n\f\r"), " \t\n\f\r")), false
}

// stateOf finds the state whose full signature the loaded text has; a text
// in a state no representative stands for fails the test.
func stateOf(t *testing.T, o *oracle, cl *classifier) int {
	t.Helper()
	sig := make([]bool, len(cl.probes))
	for i, p := range cl.probes {
		sig[i] = o.complete(p)
	}
	for k, s := range cl.states {
		r := newOracle()
		r.load([]byte(s.rep), nil)
		same := true
		for i, p := range cl.probes {
			if r.complete(p) != sig[i] {
				same = false
				break
			}
		}
		r.close()
		if same {
			if got := cl.classify(o); got != k {
				t.Fatalf("text %q: the decision tree says state %d (%q), its signature is state %d's (%q)", o.buf[:o.n], got, cl.states[got].rep, k, s.rep)
			}
			return k
		}
	}
	t.Fatalf("text %q is in a state no representative stands for", o.buf[:o.n])
	return -1
}

// sqlPieces are the tokens sqlite3_complete tells apart, and ordinary text.
var sqlPieces = []string{"'", `"`, "`", "[", "]", "/*", "*/", "*", "/", "-", "--", "\n", "\r", "\f", "\v", "\t", " ", ";", ";", ";",
	"END", "end", "BEGIN", "CREATE", "create", "TRIGGER", "TEMP", "TEMPORARY", "EXPLAIN", "x", "INSERT", "é", "_", "$", "0", "(", ")", ",",
	";CREATE TRIGGER t ", ";create temp trigger t ", ";EXPLAIN CREATE TRIGGER t ", "; END", ";END;", "CREATE TEMPORARY TRIGGER"}

func randomSQL(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		p := sqlPieces[r.IntN(len(sqlPieces))]
		if r.IntN(3) == 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p)
	}
	return b.String()
}

// TestSplitAgreesWithSQLite compares Split with the quadratic reference on
// random texts made of the pieces SQLite's completeness rule cares about.
func TestSplitAgreesWithSQLite(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		sql := randomSQL(r, 1+r.IntN(60))
		checkSplit(t, sql)
		if t.Failed() {
			t.Fatalf("case %d", i)
		}
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{"CREATE TRIGGER t BEGIN SELECT CASE WHEN 1 THEN 2 END; END;x;", "a;'b;';c", "/*;*/;--;\n;", "CREATE TEMP TRIGGER x BEGIN; END\f;", "EXPLAIN CREATE TRIGGER [;] BEGIN `;`; END; SELECT 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if strings.IndexByte(sql, 0) >= 0 {
			return
		}
		checkSplit(t, sql)
	})
}

func checkSplit(t *testing.T, sql string) {
	t.Helper()
	want, wantOpen := naiveSplit(t, sql)
	var got []string
	err := Split(strings.NewReader(sql), func(s Statement) error {
		got = append(got, string(s.Text))
		return nil
	})
	if gotOpen := err != nil; gotOpen != wantOpen || strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("Split(%q):\n got %q (error %v)\nwant %q (open %v)", sql, got, err, want, wantOpen)
	}
}

// TestRepresentatives checks what the representatives stand for: each is
// in its own state, and the decision tree finds it.
func TestRepresentatives(t *testing.T) {
	t.Parallel()
	cl := classes()
	o := newOracle()
	defer o.close()
	for k, s := range cl.states {
		o.load([]byte(s.rep), nil)
		if got := cl.classify(o); got != k {
			t.Errorf("representative %q: classified as %d (%q), want %d", s.rep, got, cl.states[got].rep, k)
		}
	}
	if got, want := len(cl.states), 7+4*3+2*7; got != want {
		// 7 keyword states; inside ' " ` [ three classes each (the token
		// ends as an ordinary token: three outcomes); inside /* and -- one
		// per keyword state (the comment is white space).
		t.Errorf("%d states, want %d", got, want)
	}
}

// BenchmarkSplit measures Split on hostile inputs against a baseline in
// the same run: Split of an ordinary dump of the same size. x-dump is the
// ratio of their times, per byte; at 1 and 4 MiB it stays the same when
// the cost is linear (it would grow fourfold if it were quadratic).
func BenchmarkSplit(b *testing.B) {
	row := "INSERT INTO \"orders\" (\"id\",\"customer\",\"note\",\"total\") VALUES(1234,'Ada Lovelace','two; three',12.5);\n"
	for _, size := range []int{1 << 20, 4 << 20} {
		dump := []byte(strings.Repeat(row, size/len(row)))
		for _, bc := range []struct {
			name string
			sql  string
		}{
			{"dump", string(dump)},
			// A string full of ';' and newlines: one statement whose every
			// other byte is a ';' inside a string.
			{"semicolons-in-string", "INSERT INTO t VALUES('" + strings.Repeat(";\n", size/2) + "');"},
			// Distinct short segments between ';' (no memo hits).
			{"distinct-segments", "INSERT INTO t VALUES('" + distinctSegments(size) + "');"},
			{"trigger-body", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN " + strings.Repeat("SELECT 1; ", size/10) + "END;"},
			{"tiny-statements", strings.Repeat(";x;", size/3)},
		} {
			data := []byte(bc.sql)
			b.Run(fmt.Sprintf("%s/%dMiB", bc.name, size>>20), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				var base, split float64
				for b.Loop() {
					t0 := time.Now()
					if err := Split(bytes.NewReader(dump), func(Statement) error { return nil }); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if err := Split(bytes.NewReader(data), func(Statement) error { return nil }); err != nil {
						b.Fatal(err)
					}
					base += float64(t1.Sub(t0)) / float64(len(dump))
					split += float64(time.Since(t1)) / float64(len(data))
				}
				b.ReportMetric(split/base, "x-dump")
			})
		}
	}
}

func distinctSegments(n int) string {
	var sb strings.Builder
	for i := 0; sb.Len() < n; i++ {
		sb.WriteString(strconv.Itoa(i))
		sb.WriteByte(';')
	}
	return sb.String()
}
