package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/querydump"
)

// Rates are measured over the last rateWindow of the transfer and shown
// only once they span minRateSpan: a 60 KiB dump that arrives in 1 ms has no
// meaningful rate.
const (
	rateWindow  = 5 * time.Second
	minRateSpan = time.Second
	// sampleEvery bounds the samples kept: bytes arrive in small writes.
	sampleEvery = 100 * time.Millisecond
	// redrawEvery is how often a terminal line is redrawn; heartbeatEvery
	// how often a line is printed elsewhere while nothing else happens.
	redrawEvery    = 250 * time.Millisecond
	heartbeatEvery = 10 * time.Second
)

type phase int

const (
	phaseStarting phase = iota
	phaseExporting
	phaseStoring
	phaseQuerying
)

// progress tells a person what one database's backup is doing: the export
// (elapsed time, polls, and that D1 blocks the database meanwhile), then
// the dump's transfer (bytes, rate). live redraws one line (a terminal,
// one database); otherwise it prints a line per event and a heartbeat line
// while an export or transfer goes on. Lines start with the database's
// name, so several databases can share stderr. Nothing is printed before
// the export has started.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	name string
	live bool
	// width bounds the live line: a line wider than the terminal wraps,
	// and \r then redraws only its last part.
	width int
	now   func() time.Time

	phase      phase
	exp        backup.Export
	since      time.Time // the current phase began
	last       time.Time // last heartbeat or event line
	done       int64
	total      int64
	rate       rateMeter
	query      querydump.Progress
	drawn      bool
	stop, gone chan struct{}
}

func newProgress(w io.Writer, name string, live bool, width int, now func() time.Time) *progress {
	return &progress{w: w, name: clean(name), live: live, width: max(width, 20), now: now, total: -1}
}

// start begins the ticker that redraws or prints heartbeats; finish stops it.
func (p *progress) start() {
	p.stop, p.gone = make(chan struct{}), make(chan struct{})
	every := heartbeatEvery
	if p.live {
		every = redrawEvery
	}
	go func() {
		defer close(p.gone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
}

// finish stops the ticker and clears the live line.
func (p *progress) finish() {
	if p.stop != nil {
		close(p.stop)
		<-p.gone
		p.stop = nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

// storing is how long the dump has been stored for (0 before).
func (p *progress) storing() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase != phaseStoring {
		return 0
	}
	return p.now().Sub(p.since)
}

// onExport is backup.Config.OnExport.
func (p *progress) onExport(x backup.Export) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if x.DatabaseName != "" {
		p.name = clean(x.DatabaseName)
	}
	switch {
	case x.Status == backup.StatusQuery:
		// Read through the query API: onQuery says so when it begins.
	case p.phase == phaseStarting || x.Restarts != p.exp.Restarts:
		what := "exporting"
		if x.Restarts > 0 {
			what = fmt.Sprintf("the export stopped; started a new one (restart %d)", x.Restarts)
		}
		p.line(now, "%s: %s; D1 answers no queries to %s until the export completes", p.name, what, p.name)
		p.phase, p.since, p.done, p.total, p.rate = phaseExporting, now, 0, -1, rateMeter{}
	}
	p.exp = x
	if x.Status == backup.StatusComplete && p.phase == phaseExporting {
		p.line(now, "%s: export complete after %s, %s; D1 serves the database again; storing the dump",
			p.name, elapsed(now.Sub(p.since)), count(x.Polls, "poll", "polls"))
		p.phase, p.since = phaseStoring, now
	}
	p.redraw(now)
}

// onBytes is backup.Config.Progress.
func (p *progress) onBytes(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.done, p.total = done, total
	p.rate.add(now, done)
}

func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.live {
		p.redraw(now)
		return
	}
	if now.Sub(p.last) < heartbeatEvery {
		return
	}
	switch p.phase {
	case phaseExporting:
		p.line(now, "%s: export running for %s, %s; the database answers no queries until it completes",
			p.name, elapsed(now.Sub(p.since)), count(p.exp.Polls, "poll", "polls"))
	case phaseStoring:
		p.line(now, "%s: storing the dump: %s", p.name, p.transfer(now))
	case phaseQuerying:
		p.line(now, "%s: reading through the query API: %s", p.name, p.queryLine())
	}
}

// report prints a line of its own (a result, a warning).
func (p *progress) report(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line(p.now(), format, args...)
}

// Write lets a logger share the terminal with the live line.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	n, err := p.w.Write(b)
	p.redraw(p.now())
	return n, err
}

// line prints a permanent line. Call with p.mu held.
func (p *progress) line(now time.Time, format string, args ...any) {
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
	p.last = now
}

// clear removes the live line. Call with p.mu held.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// redraw draws the live line. Call with p.mu held.
func (p *progress) redraw(now time.Time) {
	if !p.live {
		return
	}
	var s string
	switch p.phase {
	case phaseExporting:
		s = fmt.Sprintf("  exporting %s: %s, %s (no queries are answered until it completes)",
			p.name, elapsed(now.Sub(p.since)), count(p.exp.Polls, "poll", "polls"))
	case phaseStoring:
		s = fmt.Sprintf("  storing %s: %s", p.name, p.transfer(now))
	case phaseQuerying:
		s = fmt.Sprintf("  reading %s: %s", p.name, p.queryLine())
	default:
		return
	}
	fmt.Fprint(p.w, "\r\033[K"+truncate(s, p.width-1))
	p.drawn = true
}

// transfer describes the transfer so far: 12.0 MiB of 2.0 GiB (1%), 45.0
// MiB/s. Call with p.mu held.
func (p *progress) transfer(now time.Time) string {
	s := bytesHuman(p.done)
	if p.total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", bytesHuman(p.total), p.done*100/p.total)
	}
	if r, ok := p.rate.perSecond(); ok {
		s += fmt.Sprintf(", %s/s", bytesHuman(int64(r)))
	}
	return s
}

// rateMeter measures a transfer rate over a sliding window.
type rateMeter struct{ samples []sample }

type sample struct {
	t time.Time
	n int64
}

func (m *rateMeter) add(t time.Time, n int64) {
	if k := len(m.samples); k > 0 && t.Sub(m.samples[k-1].t) < sampleEvery {
		return
	}
	m.samples = append(m.samples, sample{t, n})
	// Keep one sample at or before the window's start, so the window spans
	// all of rateWindow once the transfer is that old.
	for len(m.samples) > 2 && !m.samples[1].t.After(t.Add(-rateWindow)) {
		m.samples = m.samples[1:]
	}
}

// perSecond is the rate over the window; false until it spans minRateSpan.
func (m *rateMeter) perSecond() (float64, bool) {
	if len(m.samples) < 2 {
		return 0, false
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	span := last.t.Sub(first.t)
	if span < minRateSpan {
		return 0, false
	}
	return float64(last.n-first.n) / span.Seconds(), true
}

// storedLine describes a stored backup in one line, with the average rate
// when the transfer took long enough for one to mean something.
func storedLine(sum backup.Summary, took time.Duration) string {
	if sum.AlreadyExisted {
		return fmt.Sprintf("already stored (backup %s): this export was backed up before", backup.ID(sum.DatabaseID, sum.Bookmark))
	}
	s := fmt.Sprintf("stored %s of SQL as %s %s in %s", bytesHuman(sum.SQLBytes), bytesHuman(sum.StoredBytes), format(sum.Compression, sum.Encrypted), elapsed(took))
	if took >= minRateSpan {
		s += fmt.Sprintf(", %s/s", bytesHuman(int64(float64(sum.SQLBytes)/took.Seconds())))
	}
	return s + fmt.Sprintf(" (backup %s)", backup.ID(sum.DatabaseID, sum.Bookmark))
}

// format names how a backup is stored: gzip, zstd+age, none.
func format(compression string, encrypted bool) string {
	if encrypted {
		return compression + "+age"
	}
	return compression
}
