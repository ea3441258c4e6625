package d1emu

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// dumpFile is a generated dump behind a signed URL.
type dumpFile struct {
	id      string
	db      *database
	path    string // "" for synthetic
	size    int64
	etag    string
	expires time.Time // zero until the export completes
}

// open returns the dump's bytes from offset off.
func (f *dumpFile) writeTo(ctx context.Context, w io.Writer, off, n int64) error {
	if f.path == "" {
		_, err := writeSynthetic(ctx, &window{w: w, skip: off, left: n}, f.db.Name, f.size)
		if errors.Is(err, errWindowDone) {
			err = nil
		}
		return err
	}
	file, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	if _, err := file.Seek(off, io.SeekStart); err != nil {
		return err
	}
	_, err = io.Copy(w, io.LimitReader(file, n))
	return err
}

var errWindowDone = errors.New("window done")

// window passes on n bytes after skipping some.
type window struct {
	w          io.Writer
	skip, left int64
}

func (v *window) Write(p []byte) (int, error) {
	total := len(p)
	if v.skip > 0 {
		k := min(int64(len(p)), v.skip)
		v.skip -= k
		p = p[k:]
	}
	if len(p) > 0 && v.left > 0 {
		k := min(int64(len(p)), v.left)
		if _, err := v.w.Write(p[:k]); err != nil {
			return 0, err
		}
		v.left -= k
	}
	if v.left == 0 {
		return total, errWindowDone
	}
	return total, nil
}

// bookmark formats a D1-style bookmark: the write counter leads, so
// bookmarks sort in time order; the content hash fills the rest, so an
// unchanged database gives the same bookmark again.
func bookmark(version uint64, content []byte) string {
	return fmt.Sprintf("%08x-%08x-%08x-%032x", uint32(version),
		binary.BigEndian.Uint32(content[0:4]), binary.BigEndian.Uint32(content[4:8]), content[8:24])
}

// currentBookmark settles the write counter against the content hash: a
// change made behind the emulator's back (a direct write to DBPath) also
// advances it. Call with d.mu held.
func (d *database) currentBookmark(content []byte) string {
	h := sha256.New()
	h.Write([]byte(d.UUID))
	h.Write(content)
	sum := h.Sum(nil)
	if d.contentHash != nil && !hmac.Equal(d.contentHash, sum) {
		d.version++
	}
	d.contentHash = sum
	return bookmark(d.version, sum)
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
	var content []byte
	if d.path == "" {
		f.size = d.synthSize
		sum := sha256.Sum256(fmt.Appendf(nil, "synthetic\x00%s\x00%d", d.Name, d.synthSize))
		content = sum[:]
	} else {
		if d.db == nil {
			return nil, errors.New("server closed")
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
	e.bookmark = d.currentBookmark(content)
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

const amzDate = "20060102T150405Z"

func (s *Server) sign(path, date, expires string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(path + "\n" + date + "\n" + expires))
	return hex.EncodeToString(m.Sum(nil))
}

// signedURL points back at the host the client called.
func (s *Server) signedURL(r *http.Request, f *dumpFile) string {
	return s.presign(r, "/__emu/dumps/"+f.id, f.expires)
}

// presign makes an S3-style presigned URL for path on the host the client
// called, valid until expires.
func (s *Server) presign(r *http.Request, path string, expires time.Time) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ttl := int64(s.opts.URLTTL / time.Second)
	date := expires.Add(-time.Duration(ttl) * time.Second).UTC().Format(amzDate)
	exp := strconv.FormatInt(ttl, 10)
	q := url.Values{}
	q.Set("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
	q.Set("X-Amz-Date", date)
	q.Set("X-Amz-Expires", exp)
	q.Set("X-Amz-SignedHeaders", "host")
	q.Set("X-Amz-Signature", s.sign(path, date, exp))
	return scheme + "://" + r.Host + path + "?" + q.Encode()
}

// checkPresigned answers 403 as S3 would, and reports false, unless r
// carries a valid, unexpired signature made by presign.
func (s *Server) checkPresigned(c *call, r *http.Request) bool {
	q := r.URL.Query()
	date, exp, sig := q.Get("X-Amz-Date"), q.Get("X-Amz-Expires"), q.Get("X-Amz-Signature")
	if !hmac.Equal([]byte(sig), []byte(s.sign(r.URL.Path, date, exp))) {
		s.writeXMLError(c, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return false
	}
	t, err1 := time.Parse(amzDate, date)
	secs, err2 := strconv.ParseInt(exp, 10, 64)
	if err1 != nil || err2 != nil || !s.now().Before(t.Add(time.Duration(secs)*time.Second)) {
		s.writeXMLError(c, http.StatusForbidden, "AccessDenied", "Request has expired")
		return false
	}
	return true
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	f := s.dumps[id]
	s.mu.Unlock()
	dbID := ""
	if f != nil {
		dbID = f.db.UUID
	}
	c := s.newCall(w, r, EndpointDownload, dbID)
	defer s.finish(c)
	if c.fault = s.takeFault(c.endpoint, c.dbID); c.fault != nil && s.transportFault(c, true) {
		return
	}
	if !s.checkPresigned(c, r) {
		return
	}
	if f == nil {
		s.writeXMLError(c, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	off, n, partial, ok := parseRange(r.Header.Get("Range"), f.size)
	if !ok {
		c.w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", f.size))
		s.writeXMLError(c, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable")
		return
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", f.etag)
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, f.size))
	}
	c.w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if c.fault != nil && c.fault.Kind == FaultTruncate {
		if err := f.writeTo(r.Context(), c.w, off, n/2); err == nil {
			c.w.Flush()
		}
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	if err := f.writeTo(r.Context(), c.w, off, n); err != nil {
		s.log.Warn("download", "path", r.URL.Path, "err", err)
	}
}

// parseRange understands a single "bytes=a-b", "bytes=a-" or "bytes=-n".
func parseRange(h string, size int64) (off, n int64, partial, ok bool) {
	if h == "" {
		return 0, size, false, true
	}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size, false, true // ignore what we do not understand, like S3
	}
	a, b, _ := strings.Cut(spec, "-")
	switch {
	case a == "":
		k, err := strconv.ParseInt(b, 10, 64)
		if err != nil || k <= 0 {
			return 0, 0, false, false
		}
		k = min(k, size)
		return size - k, k, true, true
	default:
		start, err := strconv.ParseInt(a, 10, 64)
		if err != nil || start >= size {
			return 0, 0, false, false
		}
		end := size - 1
		if b != "" {
			if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
				return 0, 0, false, false
			}
			end = min(end, size-1)
		}
		return start, end - start + 1, true, true
	}
}
