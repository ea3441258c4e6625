package d1emu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Export states.
const (
	StatusActive   = "active"
	StatusComplete = "complete"
	StatusError    = "error"
)

type export struct {
	bookmark  string
	filename  string
	dump      *dumpFile // nil when the export fails
	failMsg   string    // set: the export ends in status error
	remaining int       // polls left before it completes
	status    string
	parts     int
	lastTouch time.Time // start or last poll: for the idle timeout
	urlExpiry time.Time // when complete
}

// expire applies the idle timeout and URL expiry to d's export. Call with
// d.mu held.
func (s *Server) expire(d *database, now time.Time) {
	e := d.export
	if e == nil {
		return
	}
	idle := now.Sub(e.lastTouch) > s.opts.IdleTimeout
	switch {
	case e.status == StatusActive && idle:
		s.cancelExport(d, "not polled")
	case e.status == StatusComplete && !now.Before(e.urlExpiry):
		d.export = nil
	case e.status == StatusError && idle:
		d.export = nil
	}
}

// cancelExport drops d's export. Call with d.mu held.
func (s *Server) cancelExport(d *database, why string) {
	e := d.export
	s.log.Info("export cancelled", "uuid", d.UUID, "bookmark", e.bookmark, "why", why)
	if e.dump != nil && e.dump.path != "" {
		os.Remove(e.dump.path)
	}
	d.export = nil
}

type exportRequest struct {
	OutputFormat    string       `json:"output_format"`
	CurrentBookmark string       `json:"current_bookmark"`
	DumpOptions     *dumpOptions `json:"dump_options"`
}

type exportResult struct {
	Filename  string `json:"filename"`
	SignedURL string `json:"signed_url"`
}

type exportResponse struct {
	Success    bool          `json:"success"`
	Type       string        `json:"type,omitempty"`
	AtBookmark string        `json:"at_bookmark,omitempty"`
	Status     string        `json:"status,omitempty"`
	Messages   []string      `json:"messages,omitempty"`
	Error      string        `json:"error,omitempty"`
	Result     *exportResult `json:"result,omitempty"`
}

func (s *Server) handleExport(c *call) {
	var req exportRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		s.writeError(c, http.StatusBadRequest, 7400, "The request body is not valid JSON: "+err.Error())
		return
	}
	if req.OutputFormat != "polling" {
		s.writeError(c, http.StatusBadRequest, 7400, `Invalid request body: output_format must be "polling"`)
		return
	}
	d := s.lookup(c.dbID, false)
	if d == nil {
		s.notFound(c)
		return
	}
	if s.importBusy(d.UUID) {
		s.writeResult(c, http.StatusOK, exportResponse{Error: MessageImportBusy}, nil)
		return
	}
	if c.fault != nil {
		switch c.fault.Kind {
		case FaultBusy:
			s.writeResult(c, http.StatusOK, exportResponse{Error: MessageBusy}, nil)
			return
		case FaultNotExporting:
			// Make it true: the running export (if any) is gone, so a new
			// export can start right away.
			d.mu.Lock()
			if e := d.export; e != nil && e.status == StatusActive {
				s.cancelExport(d, "injected fault")
			}
			d.mu.Unlock()
			s.writeResult(c, http.StatusOK, exportResponse{Error: MessageNotExporting}, nil)
			return
		}
	}
	failing := c.fault != nil && c.fault.Kind == FaultExportError
	d.mu.Lock()
	defer d.mu.Unlock()
	now := s.now()
	s.expire(d, now)
	var msgs []string
	e := d.export
	if req.CurrentBookmark == "" {
		if e != nil && e.status == StatusActive {
			s.writeResult(c, http.StatusOK, exportResponse{Error: MessageBusy}, nil)
			return
		}
		var err error
		if e, err = s.startExport(c.r.Context(), d, req.DumpOptions, now); err != nil {
			s.log.Error("export", "uuid", d.UUID, "err", err)
			s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
			return
		}
		if failing {
			e.failMsg = "cannot export databases with Virtual Tables (fts5)"
		}
		msgs = append(msgs, "Generating "+e.filename)
		if e.remaining == 0 {
			msgs = append(msgs, s.finishExport(d, e, now)...)
		}
	} else {
		if e == nil || e.bookmark != req.CurrentBookmark {
			s.writeResult(c, http.StatusOK, exportResponse{Error: MessageNotExporting}, nil)
			return
		}
		if e.status == StatusActive {
			e.lastTouch = now
			e.remaining--
			e.parts++
			msgs = append(msgs, fmt.Sprintf("Uploaded part %d", e.parts))
			if failing {
				e.failMsg = "cannot export databases with Virtual Tables (fts5)"
				e.remaining = 0
			}
			if e.remaining <= 0 {
				msgs = append(msgs, s.finishExport(d, e, now)...)
			}
		}
	}
	resp := exportResponse{Success: true, Type: "export", AtBookmark: e.bookmark, Status: e.status, Messages: msgs}
	if resp.Messages == nil {
		resp.Messages = []string{}
	}
	status := http.StatusOK
	switch e.status {
	case StatusActive:
		status = http.StatusAccepted
	case StatusError:
		resp.Error = e.failMsg
	case StatusComplete:
		resp.Result = &exportResult{Filename: e.filename, SignedURL: s.signedURL(c.r, e.dump)}
	}
	s.writeResult(c, status, resp, nil)
}

// startExport snapshots d into a dump file and makes it d's export. Call
// with d.mu held.
func (s *Server) startExport(ctx context.Context, d *database, opts *dumpOptions, now time.Time) (*export, error) {
	s.sweepDumps(now)
	e := &export{remaining: s.opts.ExportPolls, status: StatusActive, lastTouch: now}
	f := &dumpFile{id: randomID(), db: d}
	var (
		content []byte
		dv      int64
	)
	if d.path == "" {
		f.size = d.synthSize
		content = syntheticContent(d)
	} else {
		if d.db == nil {
			return nil, errors.New("server closed")
		}
		var err error
		if dv, err = dataVersion(ctx, d); err != nil {
			return nil, err
		}
		f.path = filepath.Join(s.dir, "dumps", f.id+".sql")
		out, err := os.Create(f.path)
		if err != nil {
			return nil, err
		}
		var o dumpOptions
		if opts != nil {
			o = *opts
		}
		f.size, content, err = dumpSQLite(ctx, d.db, out, o)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		var vt *virtualTableError
		switch {
		case errors.As(err, &vt):
			os.Remove(f.path)
			e.failMsg = vt.Error()
			f = nil
			content, err = s.schemaHash(ctx, d)
			if err != nil {
				return nil, err
			}
		case err != nil:
			os.Remove(f.path)
			return nil, err
		}
	}
	e.bookmark = s.settle(d, content, dv)
	e.filename = fmt.Sprintf("%s-%s.sql", d.UUID, e.bookmark)
	if f != nil {
		f.etag = `"` + hex.EncodeToString(content[:16]) + `"`
	}
	e.dump = f
	if old := d.export; old != nil && old.dump != nil && old.dump.expires.IsZero() && old.dump.path != "" {
		os.Remove(old.dump.path)
	}
	d.export = e
	s.log.Info("export started", "uuid", d.UUID, "bookmark", e.bookmark)
	return e, nil
}

// schemaHash stands in for the content hash of a database that cannot be dumped.
func (s *Server) schemaHash(ctx context.Context, d *database) ([]byte, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT type||name||coalesce(sql,'') FROM sqlite_schema ORDER BY rowid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	h := sha256.New()
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		h.Write([]byte(v))
	}
	return h.Sum(nil), rows.Err()
}

// finishExport ends an export: complete with a signed URL, or error.
func (s *Server) finishExport(d *database, e *export, now time.Time) []string {
	e.lastTouch = now
	if e.failMsg != "" {
		e.status = StatusError
		if e.dump != nil && e.dump.path != "" {
			os.Remove(e.dump.path)
		}
		e.dump = nil
		s.log.Info("export failed", "uuid", d.UUID, "bookmark", e.bookmark, "error", e.failMsg)
		return nil
	}
	e.status = StatusComplete
	e.urlExpiry = now.Add(s.opts.URLTTL)
	e.dump.expires = e.urlExpiry
	s.mu.Lock()
	s.dumps[e.dump.id] = e.dump
	s.mu.Unlock()
	s.log.Info("export complete", "uuid", d.UUID, "bookmark", e.bookmark, "bytes", e.dump.size)
	return []string{fmt.Sprintf("Uploaded part %d", e.parts+1), "Finished uploading " + e.filename}
}

// sweepDumps deletes dumps whose URLs have expired.
func (s *Server) sweepDumps(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.dumps {
		if now.After(f.expires) {
			if f.path != "" {
				os.Remove(f.path)
			}
			delete(s.dumps, id)
		}
	}
}
