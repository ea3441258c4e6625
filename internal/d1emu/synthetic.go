package d1emu

import (
	"context"
	"hash/fnv"
	"io"
	"strconv"
)

// A synthetic database has no SQLite file: its dump is generated on the fly,
// deterministically from its name, as one table of realistic rows, cut to an
// exact byte size by stretching the last row's text. Nothing is held in memory
// beyond one buffer, so multi-GiB dumps stream at memory speed.

const (
	synthSchema = `CREATE TABLE "events" (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, amount REAL, note TEXT);` + "\n"
	synthHeader = dumpHeader + synthSchema
	synthInsert = `INSERT INTO "events" ("id","ts","kind","amount","note") VALUES(`
	// synthMaxFixed bounds the length of a row without its note text; the
	// generator keeps at least that much room so the last row always fits.
	synthMaxFixed = 200
	synthChunk    = 1 << 20
)

// MinSyntheticSize is the smallest synthetic dump that is valid SQL (the
// header and the CREATE TABLE); smaller sizes get a cut header.
const MinSyntheticSize = int64(len(synthHeader))

var (
	synthKinds    = []string{"click", "view", "purchase", "refund", "signup", "login", "logout", "search", "share", "cart_add"}
	synthPrefixes = []string{"", "", "", "O''Brien: ", "café ✓ ", "order #", "re: ", "“quoted” ", "it''s ", ""}
	synthCorpus   = makeCorpus()
)

func makeCorpus() string {
	words := []string{"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
		"eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim",
		"veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo",
		"consequat", "duis", "aute", "irure", "in", "reprehenderit", "voluptate", "velit", "esse", "cillum", "fugiat",
		"nulla", "pariatur", "excepteur", "sint", "occaecat", "cupidatat", "non", "proident", "sunt", "culpa", "qui",
		"officia", "deserunt", "mollit", "anim", "id", "est", "laborum", "2024", "42", "x7", "ok,", "done."}
	b := make([]byte, 0, 1<<17)
	r := rng(12345)
	for len(b) < 1<<17-32 {
		b = append(b, words[r.next()%uint64(len(words))]...)
		b = append(b, ' ')
	}
	return string(b)
}

type rng uint64

// next is splitmix64.
func (r *rng) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func synthSeed(name string) rng {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rng(h.Sum64())
}

// writeSynthetic writes the size-byte synthetic dump of the database called
// name to w.
func writeSynthetic(ctx context.Context, w io.Writer, name string, size int64) (int64, error) {
	var written int64
	buf := make([]byte, 0, synthChunk+4096)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := w.Write(buf)
		written += int64(n)
		buf = buf[:0]
		return err
	}
	if size <= MinSyntheticSize {
		n, err := io.WriteString(w, synthHeader[:size])
		return int64(n), err
	}
	buf = append(buf, synthHeader...)
	remaining := size - MinSyntheticSize
	if remaining < synthMaxFixed {
		for ; remaining > 0; remaining-- {
			buf = append(buf, '\n')
		}
		return written, flush()
	}
	r := synthSeed(name)
	ts := int64(1_700_000_000) + int64(r.next()%1_000_000)
	for id := int64(1); remaining > 0; id++ {
		a, b := r.next(), r.next()
		ts += int64(a % 97)
		noteLen := int(64 + b%448)
		start := len(buf)
		buf = appendSynthRow(buf, id, ts, a, b, noteLen)
		rowLen := int64(len(buf) - start)
		if rest := remaining - rowLen; rest < synthMaxFixed {
			// Last row: stretch (or shrink) its note to land exactly on size.
			fixed := rowLen - int64(noteLen)
			buf = appendSynthRow(buf[:start], id, ts, a, b, int(remaining-fixed))
			remaining = 0
		} else {
			remaining = rest
		}
		if len(buf) >= synthChunk {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
	return written, flush()
}

// appendSynthRow appends one INSERT whose note text is exactly noteLen bytes.
func appendSynthRow(buf []byte, id, ts int64, a, b uint64, noteLen int) []byte {
	buf = append(buf, synthInsert...)
	buf = strconv.AppendInt(buf, id, 10)
	buf = append(buf, ',')
	buf = strconv.AppendInt(buf, ts, 10)
	buf = append(buf, ",'"...)
	buf = append(buf, synthKinds[a%uint64(len(synthKinds))]...)
	buf = append(buf, "',"...)
	if (a>>8)%13 == 0 {
		buf = append(buf, "NULL"...)
	} else {
		cents := int64((a >> 16) % 1_000_000)
		buf = strconv.AppendInt(buf, cents/100, 10)
		buf = append(buf, '.')
		switch c := cents % 100; {
		case c == 0:
			buf = append(buf, '0')
		case c%10 == 0:
			buf = append(buf, byte('0'+c/10))
		default:
			buf = append(buf, byte('0'+c/10), byte('0'+c%10))
		}
	}
	buf = append(buf, ",'"...)
	prefix := synthPrefixes[(b>>32)%uint64(len(synthPrefixes))]
	if len(prefix) > noteLen {
		prefix = ""
	}
	buf = append(buf, prefix...)
	n := noteLen - len(prefix)
	off := int((b >> 40) % uint64(len(synthCorpus)/2))
	for n > 0 {
		chunk := min(n, len(synthCorpus)-off)
		buf = append(buf, synthCorpus[off:off+chunk]...)
		n -= chunk
		off = 0
	}
	buf = append(buf, "');\n"...)
	return buf
}
