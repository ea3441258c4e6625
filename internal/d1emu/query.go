package d1emu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"modernc.org/libc"
)

// The query API: POST .../query and .../raw. See the package doc for the
// choices where D1 documents nothing.

// Messages of the query API.
const (
	MessageNoStatement      = "SQL code did not contain a statement."
	MessageWrongParamCount  = "Wrong number of parameter bindings for SQL query."
	MessageParamsNotLast    = "When executing multiple SQL statements in a single call, only the last statement can have parameters."
	MessageSyntheticQueries = "D1_ERROR: this emulated database is synthetic and has no SQLite file to query"
)

// queryItem is one query of a request: SQL and its positional parameters,
// already converted the way D1 binds JavaScript values.
type queryItem struct {
	sql    string
	params []any
}

// queryError is a request D1 refuses: HTTP 400 with code 7500 (or 7400
// for a body that is not a query at all).
type queryError struct {
	code int
	msg  string
}

func (e *queryError) Error() string { return e.msg }

func badBody(format string, args ...any) *queryError {
	return &queryError{code: 7400, msg: "Invalid request body: " + fmt.Sprintf(format, args...)}
}

// parseQuery reads {"sql","params"} or {"batch":[{"sql","params"}...]}.
func parseQuery(body []byte) ([]queryItem, error) {
	type one struct {
		SQL    *string         `json:"sql"`
		Params json.RawMessage `json:"params"`
	}
	var req struct {
		one
		Batch []one `json:"batch"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badBody("%v", err)
	}
	var raw []one
	switch {
	case req.SQL != nil && req.Batch != nil:
		return nil, badBody("give sql or batch, not both")
	case req.SQL != nil:
		raw = []one{req.one}
	case len(req.Batch) > 0:
		raw = req.Batch
	default:
		return nil, badBody("sql is required")
	}
	items := make([]queryItem, len(raw))
	for i, r := range raw {
		if r.SQL == nil {
			return nil, badBody("batch[%d]: sql is required", i)
		}
		params, err := parseParams(r.Params)
		if err != nil {
			return nil, err
		}
		items[i] = queryItem{sql: *r.SQL, params: params}
	}
	return items, nil
}

// parseParams converts JSON parameters the way D1 binds JavaScript values:
// null → NULL, a number → INTEGER when it is integral (after JavaScript's
// float64 rounding), else REAL; a string → TEXT; true/false → 1/0.
// Arrays and objects are refused, as D1 refuses them.
func parseParams(raw json.RawMessage) ([]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var vals []any
	if err := dec.Decode(&vals); err != nil {
		return nil, badBody("params must be an array: %v", err)
	}
	out := make([]any, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case nil, string:
			out[i] = v
		case bool:
			out[i] = int64(0)
			if v {
				out[i] = int64(1)
			}
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil || math.IsInf(f, 0) {
				return nil, &queryError{7500, fmt.Sprintf("D1_TYPE_ERROR: Type 'number' not supported for value '%s'", v)}
			}
			if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
				out[i] = int64(f)
			} else {
				out[i] = f
			}
		default:
			return nil, &queryError{7500, fmt.Sprintf("D1_TYPE_ERROR: Type 'object' not supported for value '%v'", v)}
		}
	}
	return out, nil
}

// queryMeta is a statement's meta, as cloudflare-go's QueryResultMeta.
type queryMeta struct {
	ChangedDB       bool         `json:"changed_db"`
	Changes         int64        `json:"changes"`
	Duration        float64      `json:"duration"`
	LastRowID       float64      `json:"last_row_id"`
	RowsRead        int64        `json:"rows_read"`
	RowsWritten     int64        `json:"rows_written"`
	ServedByColo    string       `json:"served_by_colo"`
	ServedByPrimary bool         `json:"served_by_primary"`
	ServedByRegion  string       `json:"served_by_region"`
	SizeAfter       int64        `json:"size_after"`
	Timings         queryTimings `json:"timings"`
	rows            []byte       // the statement's results, rendered
}

type queryTimings struct {
	SQLDurationMs float64 `json:"sql_duration_ms"`
}

// colos name a colo per region for served_by_colo.
var colos = map[string]string{"WNAM": "SJC", "ENAM": "EWR", "WEUR": "LHR", "EEUR": "WAW", "APAC": "SIN", "OC": "SYD"}

func (s *Server) handleQuery(c *call) { s.serveQuery(c, false) }
func (s *Server) handleRaw(c *call)   { s.serveQuery(c, true) }

func (s *Server) serveQuery(c *call, raw bool) {
	d := s.lookup(c.dbID, false)
	if d == nil {
		s.notFound(c)
		return
	}
	items, err := parseQuery(c.body)
	if err == nil && d.path == "" {
		err = &queryError{7500, MessageSyntheticQueries}
	}
	if err == nil && s.importBusy(d.UUID) {
		err = &queryError{7500, MessageImportBusy}
	}
	if err != nil {
		s.queryFailed(c, d.UUID, err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s.expire(d, s.now())
	if d.export != nil && d.export.status == StatusActive {
		s.queryFailed(c, d.UUID, &queryError{7500, MessageBusy})
		return
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), s.opts.MaxQueryDuration)
	defer cancel()
	metas, err := s.runQuery(ctx, d, items, raw)
	if err != nil {
		s.queryFailed(c, d.UUID, err)
		return
	}
	s.writeQueryResults(c, d.UUID, metas)
}

func (s *Server) queryFailed(c *call, uuid string, err error) {
	var qe *queryError
	var le *liteError
	switch {
	case errors.As(err, &qe):
		s.writeError(c, http.StatusBadRequest, qe.code, qe.msg)
	case errors.As(err, &le):
		s.writeError(c, http.StatusBadRequest, 7500, le.Error())
	default:
		s.log.Error("query", "uuid", uuid, "err", err)
		s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
	}
}

// lite is d's query connection, opened on first use. Call with d.mu held.
func (s *Server) lite(d *database) (*liteConn, error) {
	if d.lite == nil {
		if d.db == nil {
			return nil, errors.New("server closed")
		}
		lc, err := openLite(d.path)
		if err != nil {
			return nil, err
		}
		d.lite = lc
	}
	return d.lite, nil
}

// runQuery runs every statement of items in one transaction, rolled back
// when one fails (no partial results), and returns one meta per statement.
// Call with d.mu held.
func (s *Server) runQuery(ctx context.Context, d *database, items []queryItem, raw bool) ([]*queryMeta, error) {
	lc, err := s.lite(d)
	if err != nil {
		return nil, err
	}
	done := lc.watch()
	defer done()
	stop := context.AfterFunc(ctx, lc.interrupt)
	defer stop()
	if lc.inTransaction() { // left over from a request that could not roll back
		if err := lc.exec("ROLLBACK"); err != nil {
			return nil, err
		}
	}
	dvBefore, err := dataVersion(ctx, d)
	if err != nil {
		return nil, err
	}
	schemaBefore, err := lc.queryInt("PRAGMA schema_version")
	if err != nil {
		return nil, err
	}
	if err := lc.exec("BEGIN"); err != nil {
		return nil, err
	}
	w := &resultWriter{raw: raw, limit: s.opts.MaxResponseBytes}
	changesBefore := lc.totalChanges()
	var metas []*queryMeta
	for _, it := range items {
		ms, err := s.runItem(lc, it, w)
		metas = append(metas, ms...)
		if err == nil {
			continue
		}
		lc.exec("ROLLBACK") //nolint:errcheck // the error at hand says more
		if isInterrupt(err) && ctx.Err() != nil {
			return nil, &queryError{7500, fmt.Sprintf("D1_ERROR: the query ran over %s and was interrupted: SQLITE_INTERRUPT", s.opts.MaxQueryDuration)}
		}
		return nil, err
	}
	if err := lc.exec("COMMIT"); err != nil {
		lc.exec("ROLLBACK") //nolint:errcheck
		return nil, err
	}
	changed := lc.totalChanges() != changesBefore
	size, err := lc.queryInt("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
	if err != nil {
		return nil, err
	}
	schemaAfter, err := lc.queryInt("PRAGMA schema_version")
	if err != nil {
		return nil, err
	}
	if changed || schemaAfter != schemaBefore {
		s.advance(d)
	} else if dv, err := dataVersion(ctx, d); err == nil && d.contentHash != nil && d.dataVersion == dvBefore {
		// Nothing changed: a commit of this connection (ours) is not a
		// change made behind the emulator's back (one made before this
		// request still shows at the next bookmark).
		d.dataVersion = dv
	}
	for _, m := range metas {
		m.SizeAfter = size
		m.ServedByRegion = d.region()
		m.ServedByColo = colos[m.ServedByRegion]
		m.ServedByPrimary = true
	}
	return metas, nil
}

// runItem runs the statements of one query. Only the last statement may
// have parameters, and then exactly as many as given.
func (s *Server) runItem(lc *liteConn, it queryItem, w *resultWriter) ([]*queryMeta, error) {
	z, err := libc.CString(it.sql)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(lc.tls, z)
	var metas []*queryMeta
	for off := 0; ; {
		for off < len(it.sql) && strings.IndexByte(" \t\n\r\f", it.sql[off]) >= 0 {
			off++
		}
		st, tail, err := lc.prepare(z+uintptr(off), len(it.sql)-off)
		if err != nil {
			return metas, err
		}
		next := int(tail - z)
		if st.p == 0 { // only comments and whitespace left
			if len(metas) == 0 {
				return nil, &queryError{7500, MessageNoStatement}
			}
			return metas, nil
		}
		last := onlyComments(it.sql[next:])
		m, err := s.runStatement(st, it.sql[off:next], last, it.params, w)
		st.finalize()
		if err != nil {
			return metas, err
		}
		metas = append(metas, m)
		if last {
			return metas, nil
		}
		off = next
	}
}

func (s *Server) runStatement(st liteStmt, text string, last bool, params []any, w *resultWriter) (*queryMeta, error) {
	switch n := st.paramCount(); {
	case isTransactionControl(text):
		return nil, &queryError{7500, MessageTransaction}
	case !last && n > 0:
		return nil, &queryError{7500, MessageParamsNotLast}
	case last && n != len(params):
		return nil, &queryError{7500, MessageWrongParamCount}
	}
	if last {
		for i, p := range params {
			if err := st.bind(i+1, p); err != nil {
				return nil, err
			}
		}
	}
	lc := st.c
	readonly := st.readonly()
	var schemaBefore int64
	if !readonly {
		var err error
		if schemaBefore, err = lc.queryInt("PRAGMA schema_version"); err != nil {
			return nil, err
		}
	}
	start, before := time.Now(), lc.totalChanges()
	m := &queryMeta{}
	cols := st.columns()
	w.begin(cols)
	for {
		row, err := st.step()
		if err != nil {
			return nil, err
		}
		if !row {
			break
		}
		m.RowsRead++
		if err := w.row(st, cols); err != nil {
			return nil, err
		}
	}
	m.rows = w.end()
	m.Duration = float64(time.Since(start).Microseconds()) / 1000
	m.Timings.SQLDurationMs = m.Duration
	m.Changes = lc.totalChanges() - before
	m.RowsWritten = m.Changes
	m.LastRowID = float64(lc.lastInsertRowID())
	m.ChangedDB = m.Changes > 0
	if !readonly && !m.ChangedDB {
		// changes() does not count schema changes.
		schemaAfter, err := lc.queryInt("PRAGMA schema_version")
		if err != nil {
			return nil, err
		}
		m.ChangedDB = schemaAfter != schemaBefore
	}
	return m, nil
}

// writeQueryResults answers with the envelope D1 sends: one result per
// statement.
func (s *Server) writeQueryResults(c *call, uuid string, metas []*queryMeta) {
	var b bytes.Buffer
	b.WriteString(`{"result":[`)
	for i, m := range metas {
		if i > 0 {
			b.WriteByte(',')
		}
		meta, err := json.Marshal(m)
		if err != nil {
			s.queryFailed(c, uuid, err)
			return
		}
		b.WriteString(`{"results":`)
		b.Write(m.rows)
		b.WriteString(`,"success":true,"meta":`)
		b.Write(meta)
		b.WriteByte('}')
	}
	b.WriteString(`],"success":true,"errors":[],"messages":[]}` + "\n")
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b.Bytes()) //nolint:errcheck
}
