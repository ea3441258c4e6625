package d1emu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

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

// maxBodyBytes bounds an API request body (a query batch of 100 KB
// statements included).
const maxBodyBytes = 10 << 20

// api wraps a D1 API handler: request log, rate limit, faults, auth,
// account check.
func (s *Server) api(endpoint string, h func(*Server, *call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := s.newCall(w, r, endpoint, r.PathValue("database_id"))
		var err error
		c.body, err = io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if endpoint == EndpointExport {
			var b struct {
				CurrentBookmark string `json:"current_bookmark"`
			}
			if json.Unmarshal(c.body, &b) == nil && b.CurrentBookmark != "" {
				c.endpoint = EndpointPoll
			}
		}
		defer s.finish(c)
		if s.limited(c) {
			return
		}
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
		switch {
		case err != nil:
			s.writeError(c, http.StatusBadRequest, 7400, "Could not read the request body: "+err.Error())
			return
		case len(c.body) > maxBodyBytes:
			s.writeError(c, http.StatusRequestEntityTooLarge, 7400, fmt.Sprintf("Request body over %d bytes", maxBodyBytes))
			return
		}
		if c.fault != nil && c.fault.Kind == FaultWrite {
			s.injectWrite(c)
		}
		h(s, c)
	}
}

// injectWrite runs a write fault's SQL in the request's database (or the
// fault's), as another client would have just before this request.
func (s *Server) injectWrite(c *call) {
	id := c.fault.Database
	if id == "" {
		id = c.dbID
	}
	d := s.lookup(id, false)
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := s.exec(d, c.fault.SQL); err != nil {
		s.log.Warn("injected write failed", "uuid", d.UUID, "err", err)
		return
	}
	s.log.Info("injected write", "uuid", d.UUID, "endpoint", c.endpoint)
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
	c.body, _ = io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	defer s.finish(c)
	if s.limited(c) {
		return
	}
	s.writeError(c, http.StatusNotFound, 7000, "No route for that URI")
}

func (s *Server) notFound(c *call) {
	s.writeError(c, http.StatusNotFound, 7404, fmt.Sprintf("The database %s could not be found.", c.dbID))
}

// apiTime formats times the way the Cloudflare API does.
func apiTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
