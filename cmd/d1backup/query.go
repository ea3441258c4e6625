package main

import (
	"fmt"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/querydump"
)

// query shows a read through the query API: tables, rows and SQL bytes, a
// line redrawn on a terminal, a log line every 10 s elsewhere. Its first
// call says the read has begun (under method auto, after D1 refused the
// export).
func (p *progress) query(q querydump.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.start.IsZero() {
		p.start = now
		fmt.Fprintln(p.e.stderr, "d1backup: reading the database through D1's query API; this blocks nobody")
	}
	every := 10 * time.Second
	if p.e.terminal {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every && q.TablesDone != q.Tables {
		return
	}
	p.last = now
	if !p.e.terminal {
		p.log.Info("reading through the query API", "table", q.Table, "tables_done", q.TablesDone, "tables", q.Tables, "rows", q.Rows, "bytes", q.Bytes)
		return
	}
	fmt.Fprintf(p.e.stderr, "\r\033[K  tables %d/%d, %d rows, %s", q.TablesDone, q.Tables, q.Rows, bytesHuman(q.Bytes))
	p.drawn = true
}

// printQueryLines adds what a backup through the query API says: that it
// blocked nobody, whether the dump is one state of the database, and the
// warnings.
func printQueryLines(e env, sum backup.Summary) {
	if sum.Method != backup.MethodQuery {
		return
	}
	switch {
	case sum.Consistent != nil && *sum.Consistent:
		fmt.Fprintln(e.stdout, "  read through the query API (blocked nobody); consistent: no write during the read")
	default:
		fmt.Fprintln(e.stdout, "  read through the query API (blocked nobody); INCONSISTENT: the database kept changing during the read")
	}
	for _, w := range sum.Warnings {
		fmt.Fprintln(e.stdout, "  warning: "+w)
	}
}
