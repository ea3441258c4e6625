package d1emu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const apiPrefix = "/client/v4/accounts/{account_id}/d1/database"

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET "+apiPrefix, s.api(EndpointList, s.handleList))
	m.HandleFunc("GET "+apiPrefix+"/{database_id}", s.api(EndpointGet, s.handleGet))
	m.HandleFunc("POST "+apiPrefix+"/{database_id}/export", s.api(EndpointExport, s.exportUnlessImporting(s.handleExport)))
	m.HandleFunc("POST "+apiPrefix, s.api(EndpointCreate, s.handleCreate))
	m.HandleFunc("POST "+apiPrefix+"/{database_id}/import", s.api(EndpointImport, s.handleImport))
	m.HandleFunc("PUT /__emu/uploads/{id}", s.handleUpload)
	m.HandleFunc("/client/v4/", s.handleNoRoute)
	m.HandleFunc("GET /__emu/dumps/{id}", s.handleDownload)
	s.controlRoutes(m)
	s.mux = m
}

// recorder remembers the status a handler answered.
type recorder struct {
	http.ResponseWriter
	status int
	// onStatus runs once, when the status is known and before any byte of
	// the response leaves, so the request log is complete by the time a
	// client has its answer.
	onStatus func()
}

func (r *recorder) setStatus(code int) {
	if r.status == 0 {
		r.status = code
		if r.onStatus != nil {
			r.onStatus()
		}
	}
}

func (r *recorder) WriteHeader(code int) {
	r.setStatus(code)
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.setStatus(http.StatusOK)
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Flush() { http.NewResponseController(r.ResponseWriter).Flush() } //nolint:errcheck

// Unwrap lets http.ResponseController reach Hijack.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// call is one request in flight.
type call struct {
	w        *recorder
	r        *http.Request
	endpoint string
	dbID     string
	body     []byte
	fault    *Fault // the injected fault that hit this request, if any
	recorded bool
}

func (s *Server) newCall(w http.ResponseWriter, r *http.Request, endpoint, dbID string) *call {
	c := &call{r: r, endpoint: endpoint, dbID: dbID}
	c.w = &recorder{ResponseWriter: w, onStatus: func() { s.finish(c) }}
	return c
}

// finish logs the request once: when its status is set, when its
// connection is dropped, or (deferred) when the handler wrote nothing.
func (s *Server) finish(c *call) {
	if c.recorded {
		return
	}
	c.recorded = true
	_, hasAuth := c.r.Header["Authorization"]
	s.record(Request{
		Method: c.r.Method, Path: c.r.URL.Path, Endpoint: c.endpoint,
		Body: c.body, HasAuth: hasAuth, Status: c.w.status,
	})
	s.log.Info("request", "method", c.r.Method, "path", c.r.URL.Path, "endpoint", c.endpoint, "status", c.w.status)
}

// api wraps a D1 API handler: request log, faults, auth, account check.
func (s *Server) api(endpoint string, h func(*call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := s.newCall(w, r, endpoint, r.PathValue("database_id"))
		c.body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if endpoint == EndpointExport {
			var b struct {
				CurrentBookmark string `json:"current_bookmark"`
			}
			if json.Unmarshal(c.body, &b) == nil && b.CurrentBookmark != "" {
				c.endpoint = EndpointPoll
			}
		}
		defer s.finish(c)
		if c.fault = s.takeFault(c.endpoint, c.dbID); c.fault != nil && s.transportFault(c, false) {
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
			s.writeError(c, http.StatusUnauthorized, 10000, MessageAuth)
			return
		}
		if r.PathValue("account_id") != s.opts.AccountID {
			s.writeError(c, http.StatusForbidden, 7403, "The given account is not valid or is not authorized to access this service")
			return
		}
		h(c)
	}
}

// transportFault answers the faults that do not depend on the endpoint's
// logic; it reports whether it answered.
func (s *Server) transportFault(c *call, xml bool) bool {
	f := c.fault
	switch f.Kind {
	case FaultRateLimit:
		c.w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		if xml {
			s.writeXMLError(c, http.StatusTooManyRequests, "SlowDown", "Please reduce your request rate.")
		} else {
			s.writeError(c, http.StatusTooManyRequests, 971, MessageRateLimited)
		}
	case FaultServerError:
		if xml {
			s.writeXMLError(c, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		} else {
			s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
		}
	case FaultBadToken:
		s.writeError(c, http.StatusUnauthorized, 10000, MessageAuth)
	case FaultExpired:
		s.writeXMLError(c, http.StatusForbidden, "AccessDenied", "Request has expired")
	case FaultReset:
		s.reset(c)
	default:
		return false
	}
	return true
}

// reset drops the connection without a response.
func (s *Server) reset(c *call) {
	conn, _, err := http.NewResponseController(c.w).Hijack()
	s.finish(c) // before the client can notice the reset
	if err != nil {
		panic(http.ErrAbortHandler) // HTTP/2: reset the stream
	}
	conn.Close()
}

type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
}

type envelope struct {
	Success    bool        `json:"success"`
	Errors     []apiError  `json:"errors"`
	Messages   []any       `json:"messages"`
	Result     any         `json:"result"`
	ResultInfo *resultInfo `json:"result_info,omitempty"`
}

func (s *Server) writeJSON(c *call, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // signed URLs keep their '&'
	if err := enc.Encode(v); err != nil {
		http.Error(c.w, err.Error(), http.StatusInternalServerError)
		return
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	c.w.WriteHeader(status)
	c.w.Write(b.Bytes()) //nolint:errcheck
}

func (s *Server) writeResult(c *call, status int, result any, info *resultInfo) {
	s.writeJSON(c, status, envelope{Success: true, Errors: []apiError{}, Messages: []any{}, Result: result, ResultInfo: info})
}

func (s *Server) writeError(c *call, status, code int, msg string) {
	s.writeJSON(c, status, envelope{Errors: []apiError{{Code: code, Message: msg}}, Messages: []any{}})
}

func (s *Server) writeXMLError(c *call, status int, code, msg string) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>")
	b.WriteString(code)
	b.WriteString("</Code><Message>")
	b.WriteString(msg)
	b.WriteString("</Message></Error>")
	c.w.Header().Set("Content-Type", "application/xml")
	c.w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	c.w.WriteHeader(status)
	c.w.Write(b.Bytes()) //nolint:errcheck
}

func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request) {
	c := s.newCall(w, r, "", "")
	c.body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
	defer s.finish(c)
	s.writeError(c, http.StatusNotFound, 7000, "No route for that URI")
}

func (s *Server) notFound(c *call) {
	s.writeError(c, http.StatusNotFound, 7404, fmt.Sprintf("The database %s could not be found.", c.dbID))
}

// apiTime formats times the way the Cloudflare API does.
func apiTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

type listItem struct {
	UUID         string  `json:"uuid"`
	Name         string  `json:"name"`
	CreatedAt    string  `json:"created_at"`
	Version      string  `json:"version"`
	Jurisdiction *string `json:"jurisdiction"`
}

func queryInt(r *http.Request, key string, def int) int {
	v := r.URL.Query().Get(key)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return def
	}
	return int(f)
}

func (s *Server) handleList(c *call) {
	page := max(queryInt(c.r, "page", 1), 1)
	perPage := min(max(queryInt(c.r, "per_page", 1000), 10), 10000)
	name := c.r.URL.Query().Get("name")
	var all []listItem
	for _, d := range s.Databases() {
		if name != "" && !strings.Contains(d.Name, name) {
			continue
		}
		all = append(all, listItem{UUID: d.UUID, Name: d.Name, CreatedAt: apiTime(d.CreatedAt), Version: "production"})
	}
	items := []listItem{}
	if start := (page - 1) * perPage; start < len(all) {
		items = all[start:min(start+perPage, len(all))]
	}
	s.writeResult(c, http.StatusOK, items, &resultInfo{Page: page, PerPage: perPage, Count: len(items), TotalCount: len(all)})
}

type dbDetails struct {
	UUID            string            `json:"uuid"`
	Name            string            `json:"name"`
	CreatedAt       string            `json:"created_at"`
	Version         string            `json:"version"`
	NumTables       int               `json:"num_tables"`
	FileSize        int64             `json:"file_size"`
	Jurisdiction    *string           `json:"jurisdiction"`
	ReadReplication map[string]string `json:"read_replication"`
}

func (s *Server) handleGet(c *call) {
	d := s.lookup(c.dbID, false)
	if d == nil {
		s.notFound(c)
		return
	}
	out := dbDetails{
		UUID: d.UUID, Name: d.Name, CreatedAt: apiTime(d.CreatedAt), Version: "production",
		ReadReplication: map[string]string{"mode": "disabled"},
	}
	if d.path == "" {
		out.NumTables, out.FileSize = 1, d.synthSize
	} else {
		d.mu.Lock()
		err := errors.New("server closed")
		if d.db != nil {
			err = d.db.QueryRow(`SELECT
			(SELECT count(*) FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_cf\_%' ESCAPE '\'),
			(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())`).Scan(&out.NumTables, &out.FileSize)
		}
		d.mu.Unlock()
		if err != nil {
			s.log.Error("get database", "uuid", d.UUID, "err", err)
			s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
			return
		}
	}
	s.writeResult(c, http.StatusOK, out, nil)
}
