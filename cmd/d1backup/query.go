package main

import (
	"fmt"
	"io"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/querydump"
)

// onQuery is backup.Config.Query.Progress: a read through D1's query API
// (method query, or auto after D1 refused the export), shown like an
// export's progress, with tables, rows and SQL bytes.
func (p *progress) onQuery(q querydump.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.phase != phaseQuerying {
		p.line(now, "%s: reading the database through D1's query API; this blocks nobody", p.name)
		p.phase, p.since = phaseQuerying, now
	}
	p.query = q
	p.redraw(now)
}

// queryLine describes a read through the query API so far. Call with p.mu
// held.
func (p *progress) queryLine() string {
	return fmt.Sprintf("tables %d/%d, %s, %s of SQL", p.query.TablesDone, p.query.Tables, count(int(p.query.Rows), "row", "rows"), bytesHuman(p.query.Bytes))
}

// printQueryLines adds what a backup through the query API says: that it
// blocked nobody, whether the dump is one state of the database, and the
// warnings.
func printQueryLines(w io.Writer, sum backup.Summary) {
	if sum.Method != backup.MethodQuery {
		return
	}
	switch {
	case sum.Consistent != nil && *sum.Consistent:
		fmt.Fprintln(w, "  read through the query API (blocked nobody); consistent: no write during the read")
	default:
		fmt.Fprintln(w, "  read through the query API (blocked nobody); INCONSISTENT: the database kept changing during the read")
	}
	for _, warning := range sum.Warnings {
		fmt.Fprintln(w, "  warning: "+clean(warning))
	}
}
