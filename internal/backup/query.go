package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/querydump"
)

// QueryReads bounds the reads of one backup through the query API: a read
// during which the database was written to is done again, this many reads
// in all; if the last one saw a write too, its dump is stored and marked
// inconsistent.
const QueryReads = 3

// QueryRead describes a backup read through the query API.
type QueryRead struct {
	// BookmarkBefore (the manifest's Bookmark) and BookmarkAfter are the
	// Time Travel bookmarks read before and after the last read.
	BookmarkBefore string `json:"bookmark_before"`
	BookmarkAfter  string `json:"bookmark_after"`
	// Consistent: nothing was written while the database was read (the
	// two bookmarks are equal), so the dump is the database at Bookmark.
	Consistent bool `json:"consistent"`
	// Reads counts the reads made, the last one stored.
	Reads    int   `json:"reads"`
	Tables   int   `json:"tables"`
	Rows     int64 `json:"rows"`
	Requests int   `json:"requests"`
}

func (q *QueryRead) consistent() *bool {
	if q == nil {
		return nil
	}
	c := q.Consistent
	return &c
}

// errChanged ends a read that saw the database change, to read it again.
var errChanged = errors.New("backup: the database was written to while it was read")

// errUploadStopped unblocks a read whose upload ended first.
var errUploadStopped = errors.New("backup: the upload stopped")

// Query backs up a database through the query API (the output of Start or
// Poll with StatusQuery): it reads the Time Travel bookmark, the whole
// database page by page, and the bookmark again, streaming the dump into
// the store under the key of the first bookmark (compressed, encrypted, with
// its manifest, as for an export). A read that saw a write is discarded
// (nothing is left under its key) and done again, QueryReads reads in all.
// Nothing is blocked. A database already backed up at its current bookmark
// is not read again. A read is not resumable: a failed one starts over.
func (r *Runner) Query(ctx context.Context, exp Export) (Summary, error) {
	if exp.Status != StatusQuery {
		return Summary{}, &ConfigError{Msg: fmt.Sprintf("query needs the output of the start or poll step with status %q; got status %q", StatusQuery, exp.Status)}
	}
	// The input may not come from Start: hold it to the residency rule too.
	db, err := r.resolve(ctx, exp)
	if err != nil {
		return Summary{}, err
	}
	for read := 1; ; read++ {
		sum, err := r.queryOnce(ctx, db, exp.StartedAt, read)
		if !errors.Is(err, errChanged) {
			return sum, err
		}
		r.log.Warn("the database was written to while it was read; reading it again", "database", db.Name, "read", read)
		if err := r.cfg.Sleep(ctx, time.Duration(read)*time.Second); err != nil {
			return Summary{}, err
		}
	}
}

func (r *Runner) queryOnce(ctx context.Context, db d1.Database, started time.Time, read int) (Summary, error) {
	before, err := r.d1.Bookmark(ctx, db.UUID)
	if err != nil {
		return Summary{}, err
	}
	key, err := DumpKey(db.UUID, before, r.cfg.Compression, len(r.recipients) > 0)
	if err != nil {
		return Summary{}, err
	}
	if m, err := r.existing(ctx, Export{DatabaseID: db.UUID, Bookmark: before}); err != nil || m != nil {
		if err != nil {
			return Summary{}, err
		}
		r.log.Info("database already backed up at its current bookmark", "database", db.Name, "key", m.Key)
		return m.Summary(true), nil
	}
	if started.IsZero() {
		started = r.cfg.Now().UTC()
	}
	m := &Manifest{
		Format: ManifestFormat, Tool: "d1backup", ToolVersion: r.cfg.ToolVersion,
		DatabaseID: db.UUID, DatabaseName: db.Name, Bookmark: before,
		Key: key, ExportStartedAt: started, Compression: r.cfg.Compression,
		Method: MethodQuery, Query: &QueryRead{BookmarkBefore: before, Reads: read},
	}
	opts := r.cfg.Query
	opts.Sleep = r.cfg.Sleep
	if opts.Logger == nil {
		opts.Logger = r.log
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		st, err := querydump.Write(ctx, r.d1, db.UUID, pw, opts)
		if err == nil {
			err = r.finishRead(ctx, m, st)
		}
		pw.CloseWithError(err)
	}()
	sum, err := r.Stream(ctx, m, pr, -1, nil)
	pr.CloseWithError(errUploadStopped)
	<-done
	return sum, err
}

// finishRead reads the bookmark after a read and completes the manifest
// (before the dump's EOF, so Stream writes it complete): errChanged when
// the database changed and another read is allowed.
func (r *Runner) finishRead(ctx context.Context, m *Manifest, st querydump.Stats) error {
	after, err := r.d1.Bookmark(ctx, m.DatabaseID)
	if err != nil {
		return err
	}
	q := m.Query
	q.BookmarkAfter, q.Tables, q.Rows, q.Requests = after, st.Tables, st.Rows, st.Requests
	q.Consistent = after == q.BookmarkBefore && !st.Changed
	m.ExportCompletedAt = r.cfg.Now().UTC()
	m.Warnings = st.Warnings
	if !q.Consistent {
		if q.Reads < QueryReads {
			return errChanged
		}
		m.Warnings = append(m.Warnings, fmt.Sprintf("inconsistent: the database was written to while it was read, in each of %d reads (bookmark %s before the last read, %s after); this dump may mix states of the database", q.Reads, q.BookmarkBefore, after))
	}
	return nil
}
