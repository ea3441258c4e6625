// Package querydump reads a D1 database through the query API and writes a
// dump in D1's dump format: the way to back up what D1's export refuses
// (any database holding a virtual table, such as an FTS5 full-text index),
// and a way that never blocks the database.
//
// The dump is what restore and verify take from an export: the PRAGMA line
// D1 writes, every ordinary table's CREATE TABLE and one INSERT per row (in
// rowid or primary key order, read in bounded pages), sqlite_sequence, then
// the virtual tables' CREATE VIRTUAL TABLE and what refills them (the rows
// of a contentful FTS5 table; 'rebuild' for an external-content one, after
// everything else; nothing for a contentless one, with a warning), then
// indexes, triggers and views. Shadow tables (an FTS5 table's _data, _idx,
// _content, _docsize, _config) are not written: the FTS5 table rebuilds
// them. Every value is SQLite's own literal for it (quote()), so integers
// beyond 2^53, reals, BLOBs and text cross byte-exact; text holding a NUL
// byte, or bytes that are not UTF-8, is written as CAST(X'..' AS TEXT).
// Rows too large for one answer are read column by column in chunks.
//
// Every answer is checked before it is written (schema statements are
// single CREATE statements, values are literals), so an answer cannot add a
// statement to the dump. The optimizer statistics (sqlite_stat1) are not
// copied: run ANALYZE after a restore.
//
// Each request is its own read: Write does not prove the pages form one
// state. The caller reads the Time Travel bookmark before and after.
package querydump

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/d1backup/d1backup/internal/clock"
	"github.com/d1backup/d1backup/internal/d1"
)

// API is what reading a database needs of D1 (implemented by *d1.Client).
type API interface {
	Raw(ctx context.Context, databaseID, sql string) ([]d1.Rows, error)
}

var _ API = (*d1.Client)(nil)

// Options tune the reader. DefaultOptions gives the values tuned for D1;
// Write uses what it is given.
type Options struct {
	// FirstPageRows is a table's first page, before its rows' size is
	// known; PageRows bounds every page; PageBytes is the answer size a
	// page aims at once the rows' size is known.
	FirstPageRows int
	PageRows      int
	PageBytes     int
	// RowBytes: a row whose literals could be longer is read column by
	// column (D1 caps a value at 2,000,000 bytes, and a row's literals are
	// one value); ChunkBytes is the slice of a large value read at once.
	RowBytes   int
	ChunkBytes int
	// MaxRetries bounds the retries of one request after a retryable
	// failure (rate limit: after its Retry-After; 5xx; busy); Sleep waits.
	MaxRetries int
	Sleep      func(ctx context.Context, d time.Duration) error
	// Progress, if set, is called after each page.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Defaults DefaultOptions applies. A page of 8 MiB keeps a 10 GB database
// to about 1,300 requests (Cloudflare allows 1,200 per 5 minutes) and an
// answer far below any response limit; 10,000 rows keeps a page of small
// rows well inside D1's 30 s query limit.
const (
	DefaultFirstPageRows = 100
	DefaultPageRows      = 10_000
	DefaultPageBytes     = 8 << 20
	DefaultRowBytes      = 256 << 10
	DefaultChunkBytes    = 256 << 10
	DefaultMaxRetries    = 5
)

// DefaultOptions returns the options tuned for D1's limits.
func DefaultOptions() Options {
	return Options{
		FirstPageRows: DefaultFirstPageRows, PageRows: DefaultPageRows, PageBytes: DefaultPageBytes,
		RowBytes: DefaultRowBytes, ChunkBytes: DefaultChunkBytes, MaxRetries: DefaultMaxRetries,
	}
}

func (o Options) check() error {
	switch {
	case o.FirstPageRows < 1 || o.PageRows < o.FirstPageRows:
		return fmt.Errorf("querydump: page rows %d (first %d) must be positive, first <= every", o.PageRows, o.FirstPageRows)
	case o.PageBytes < 1 || o.RowBytes < 1 || o.ChunkBytes < 1 || o.ChunkBytes > maxValueBytes/2:
		return fmt.Errorf("querydump: page, row and chunk bytes must be positive, chunks at most %d", maxValueBytes/2)
	case o.MaxRetries < 0:
		return fmt.Errorf("querydump: max retries %d is negative", o.MaxRetries)
	}
	return nil
}

// D1's limits a request must stay within.
const (
	// maxStatementBytes is D1's longest SQL statement.
	maxStatementBytes = 100_000
	// maxValueBytes is D1's largest value (a hex chunk is one).
	maxValueBytes = 2_000_000
)

// Progress is how far a Write has got.
type Progress struct {
	// Table is the table being read.
	Table string
	// TablesDone of Tables have been read.
	TablesDone int
	Tables     int
	// Rows and Bytes (of SQL) written so far.
	Rows  int64
	Bytes int64
}

// Stats describe a finished Write.
type Stats struct {
	// Tables whose rows were read (ordinary and contentful FTS5 tables).
	Tables int   `json:"tables"`
	Rows   int64 `json:"rows"`
	Bytes  int64 `json:"bytes"`
	// Requests made, retries included.
	Requests int `json:"requests"`
	// Changed is true when the reader itself saw the database change (a
	// row gone between two requests). The bookmark says it too.
	Changed bool `json:"changed,omitempty"`
	// Warnings are what the dump cannot hold (a contentless FTS5 table's
	// text), one line each.
	Warnings []string `json:"warnings,omitempty"`
}

// Write reads database databaseID through api and writes its dump to w.
func Write(ctx context.Context, api API, databaseID string, w io.Writer, opts Options) (Stats, error) {
	if err := opts.check(); err != nil {
		return Stats{}, err
	}
	if opts.Sleep == nil {
		opts.Sleep = clock.Sleep
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &dumper{ctx: ctx, api: api, id: databaseID, opts: opts, log: log, out: bufio.NewWriterSize(w, 256<<10)}
	if err := d.run(); err != nil {
		return d.stats, err
	}
	if err := d.out.Flush(); err != nil {
		return d.stats, fmt.Errorf("querydump: write: %w", err)
	}
	return d.stats, nil
}

type dumper struct {
	ctx   context.Context
	api   API
	id    string
	opts  Options
	log   *slog.Logger
	out   *bufio.Writer
	stats Stats
	prog  Progress
}

// dumpHeader is the first line of every D1 dump.
const dumpHeader = "PRAGMA defer_foreign_keys=TRUE;\n"

func (d *dumper) run() error {
	sc, err := d.readSchema()
	if err != nil {
		return err
	}
	tables, err := d.plan(sc)
	if err != nil {
		return err
	}
	d.prog.Tables = len(tables)
	if sc.sequence {
		d.prog.Tables++
	}
	if err := d.write(dumpHeader); err != nil {
		return err
	}
	// Ordinary tables and their rows, then sqlite_sequence (as D1 and the
	// sqlite3 shell write it: after every other table).
	n := len(sc.tables)
	for _, t := range tables[:n] {
		if err := d.write(t.create + ";\n"); err != nil {
			return err
		}
		if err := d.rows(t); err != nil {
			return err
		}
	}
	if sc.sequence {
		if err := d.write("DELETE FROM sqlite_sequence;\n"); err != nil {
			return err
		}
		if err := d.rows(sequenceTable); err != nil {
			return err
		}
	}
	// Virtual tables after the tables they may index; a contentful FTS5
	// table's rows right after it, before any trigger exists to copy them.
	var rebuild []string
	for _, v := range sc.vtabs {
		if err := d.write(v.sql + ";\n"); err != nil {
			return err
		}
		switch {
		case v.module != moduleFTS5:
		case v.content == contentOwn:
			if err := d.rows(tables[n]); err != nil {
				return err
			}
			n++
		case v.content == contentExternal && sc.hasTable(v.contentTable):
			rebuild = append(rebuild, fmt.Sprintf("INSERT INTO %s(%s) VALUES('rebuild');\n", quoteIdent(v.name), quoteIdent(v.name)))
		case v.content == contentExternal:
			d.warn("%s: external-content FTS5 table whose content table %s does not exist: recreated empty", v.name, v.contentTable)
		default:
			d.warn("%s: contentless FTS5 table (content=''): its text cannot be read back, so it is recreated empty; re-index it from its source after a restore", v.name)
		}
	}
	for _, o := range sc.others {
		if err := d.write(o.sql + ";\n"); err != nil {
			return err
		}
	}
	// 'rebuild' reads the content table, which may be a view: last.
	for _, r := range rebuild {
		if err := d.write(r); err != nil {
			return err
		}
	}
	d.report()
	return nil
}

func (d *dumper) write(s string) error {
	if _, err := d.out.WriteString(s); err != nil {
		return fmt.Errorf("querydump: write: %w", err)
	}
	d.stats.Bytes += int64(len(s))
	return nil
}

func (d *dumper) warn(format string, args ...any) {
	w := fmt.Sprintf(format, args...)
	d.stats.Warnings = append(d.stats.Warnings, w)
	d.log.Warn("query dump", "warning", w)
}

func (d *dumper) bad(format string, args ...any) error {
	return &d1.BadAnswerError{Op: "query", Database: d.id, Msg: fmt.Sprintf(format, args...)}
}

// query runs sql, retrying retryable failures a bounded number of times,
// and checks that the answer has one result per statement.
func (d *dumper) query(sql string, statements int) ([]d1.Rows, error) {
	if len(sql) > maxStatementBytes {
		return nil, &UnsupportedError{Table: d.prog.Table, Msg: fmt.Sprintf("a request for it is %d bytes, over D1's %d-byte statement limit (very long names or primary key values)", len(sql), maxStatementBytes)}
	}
	for attempt := 0; ; attempt++ {
		d.stats.Requests++
		res, err := d.api.Raw(d.ctx, d.id, sql)
		if err == nil {
			if len(res) != statements {
				return nil, d.bad("%d results for %d statements", len(res), statements)
			}
			return res, nil
		}
		if !d1.IsRetryable(err) || attempt >= d.opts.MaxRetries || d.ctx.Err() != nil {
			return nil, err
		}
		wait := time.Duration(1<<min(attempt, 5)) * time.Second
		var rl *d1.RateLimitError
		if errors.As(err, &rl) && rl.RetryAfter > 0 {
			wait = rl.RetryAfter
		}
		d.log.Warn("query failed; retrying", "database", d.id, "attempt", attempt+2, "wait", wait, "cause", err)
		if serr := d.opts.Sleep(d.ctx, wait); serr != nil {
			return nil, err
		}
	}
}
