package d1emu

// Import and create, as the D1 REST API has them:
//
//	POST /accounts/{a}/d1/database                  {"name"} → the new, empty database
//	POST /accounts/{a}/d1/database/{id}/import      {"action":"init","etag":md5}
//	     → {upload_url, filename}, or, when a file with that MD5 was uploaded
//	       for this database before, an import already started (polling-shaped)
//	PUT  upload_url (no auth; signed, expires like dump URLs)
//	     → 200 with ETag "<md5 of the bytes received>"
//	POST .../import {"action":"ingest","etag","filename"} → status "active"
//	POST .../import {"action":"poll","current_bookmark"}
//	     → "active" for SetImportPolls polls, then "complete" (result.final_bookmark,
//	       num_queries, meta) or "error"; after that "Not currently importing anything."
//
// Ingest runs the whole file in one transaction (rolled back on any error)
// while holding the database, so the import is atomic; the import counts as
// running, and exports answer busy, until its outcome has been polled.
// Limits enforced: upload over MaxImportBytes (HTTP 413), a statement over
// MaxStatementBytes, BEGIN/COMMIT/SAVEPOINT statements, an uploaded file whose
// MD5 is not the etag. Statements are delimited by SQLite's own
// sqlite3_complete, so the emulator shares no parsing code with its clients.

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Endpoints of the import path, as used by Fault.Endpoint and Request.Endpoint.
const (
	EndpointImport = "import" // every import action: init, ingest, poll
	EndpointUpload = "upload" // PUT to the upload URL
	EndpointCreate = "create" // POST .../d1/database
)

// FaultImportError makes the next import that runs end in status "error"
// (endpoint "import"), as a failing statement would; nothing is written.
const FaultImportError = "import_error"

// Import limits, from Cloudflare's documentation.
const (
	MaxImportBytes    = 5 << 30
	MaxStatementBytes = 100 << 10
)

// Messages of the import path.
const (
	MessageNotImporting = "Not currently importing anything."
	MessageImportBusy   = "Currently processing a long-running import. Please wait and try again."
	MessageTransaction  = "To execute a transaction, please use the state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT statements."
	MessageTooBig       = "statement too long: SQLITE_TOOBIG"
)

func init() {
	for _, k := range []string{FaultRateLimit, FaultServerError, FaultReset} {
		faultEndpoints[k] = append(faultEndpoints[k], EndpointImport, EndpointUpload, EndpointCreate)
	}
	faultEndpoints[FaultBadToken] = append(faultEndpoints[FaultBadToken], EndpointImport, EndpointCreate)
	faultEndpoints[FaultImportError] = []string{EndpointImport}
}

// importState is a Server's import bookkeeping, kept beside it so the
// emulator's core types stay as they are.
type importState struct {
	mu       sync.Mutex
	polls    int                    // "active" answers to polls before the outcome
	failNext map[string]bool        // database UUID → the next import fails (FaultImportError)
	uploads  map[string]*uploadFile // by id
	jobs     map[string]*importJob  // by database UUID
}

var importStates sync.Map // *Server → *importState

func (s *Server) imports() *importState {
	v, _ := importStates.LoadOrStore(s, &importState{uploads: map[string]*uploadFile{}, jobs: map[string]*importJob{}, failNext: map[string]bool{}})
	return v.(*importState)
}

// SetImportPolls makes imports answer "active" to n polls before their
// outcome (default 0: the first poll after ingest gets it).
func (s *Server) SetImportPolls(n int) {
	st := s.imports()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.polls = max(n, 0)
}

type uploadFile struct {
	id       string
	dbUUID   string
	etag     string // as given at init
	filename string
	path     string
	md5      string // of the bytes received; "" until uploaded
	size     int64
	expires  time.Time
}

type importJob struct {
	bookmark  string
	remaining int
	failMsg   string
	result    *importResult
}

type importRequest struct {
	Action          string `json:"action"`
	Etag            string `json:"etag"`
	Filename        string `json:"filename"`
	CurrentBookmark string `json:"current_bookmark"`
}

type importMeta struct {
	ChangedDB   bool    `json:"changed_db"`
	Changes     int64   `json:"changes"`
	Duration    float64 `json:"duration"`
	RowsRead    int64   `json:"rows_read"`
	RowsWritten int64   `json:"rows_written"`
	SizeAfter   int64   `json:"size_after"`
}

type importResult struct {
	FinalBookmark string     `json:"final_bookmark"`
	NumQueries    int64      `json:"num_queries"`
	Meta          importMeta `json:"meta"`
}

type importResponse struct {
	Success    bool          `json:"success"`
	Type       string        `json:"type,omitempty"`
	AtBookmark string        `json:"at_bookmark,omitempty"`
	Status     string        `json:"status,omitempty"`
	Messages   []string      `json:"messages,omitempty"`
	Error      string        `json:"error,omitempty"`
	UploadURL  string        `json:"upload_url,omitempty"`
	Filename   string        `json:"filename,omitempty"`
	Result     *importResult `json:"result,omitempty"`
}

// importBusy reports whether d has an import that has not reported its
// outcome yet; export requests consult it.
func (s *Server) importBusy(dbUUID string) bool {
	st := s.imports()
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.jobs[dbUUID]
	return ok
}

// exportUnlessImporting answers export requests with busy while an import runs.
func (s *Server) exportUnlessImporting(h func(*call)) func(*call) {
	return func(c *call) {
		if d := s.lookup(c.dbID, false); d != nil && s.importBusy(d.UUID) {
			s.writeResult(c, http.StatusOK, exportResponse{Error: MessageImportBusy}, nil)
			return
		}
		h(c)
	}
}

func (s *Server) handleCreate(c *call) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(c.body, &req); err != nil || req.Name == "" {
		s.writeError(c, http.StatusBadRequest, 7400, "Invalid request body: name is required")
		return
	}
	if s.lookup(req.Name, true) != nil {
		s.writeError(c, http.StatusBadRequest, 7502, "A database with that name already exists")
		return
	}
	db, err := s.CreateDatabase(req.Name, "")
	if err != nil {
		s.log.Error("create database", "name", req.Name, "err", err)
		s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
		return
	}
	s.writeResult(c, http.StatusOK, dbDetails{
		UUID: db.UUID, Name: db.Name, CreatedAt: apiTime(db.CreatedAt), Version: "production",
		ReadReplication: map[string]string{"mode": "disabled"},
	}, nil)
}

func (s *Server) handleImport(c *call) {
	var req importRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		s.writeError(c, http.StatusBadRequest, 7400, "The request body is not valid JSON: "+err.Error())
		return
	}
	d := s.lookup(c.dbID, false)
	if d == nil {
		s.notFound(c)
		return
	}
	if d.path == "" {
		s.writeResult(c, http.StatusOK, importResponse{Error: "cannot import into a synthetic database"}, nil)
		return
	}
	if c.fault != nil && c.fault.Kind == FaultImportError {
		st := s.imports()
		st.mu.Lock()
		st.failNext[d.UUID] = true
		st.mu.Unlock()
	}
	switch req.Action {
	case "init":
		s.importInit(c, d, req)
	case "ingest":
		s.importIngest(c, d, req)
	case "poll":
		s.importPoll(c, d, req)
	default:
		s.writeError(c, http.StatusBadRequest, 7400, `Invalid request body: action must be "init", "ingest" or "poll"`)
	}
}

func validMD5(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// busyWith answers an import request that finds the database busy; it
// reports whether it did.
func (s *Server) busyWith(c *call, d *database) bool {
	d.mu.Lock()
	s.expire(d, s.now())
	exporting := d.export != nil && d.export.status == StatusActive
	d.mu.Unlock()
	switch {
	case exporting:
		s.writeResult(c, http.StatusOK, importResponse{Error: MessageBusy}, nil)
	case s.importBusy(d.UUID):
		s.writeResult(c, http.StatusOK, importResponse{Error: MessageImportBusy}, nil)
	default:
		return false
	}
	return true
}

func (s *Server) importInit(c *call, d *database, req importRequest) {
	if !validMD5(req.Etag) {
		s.writeError(c, http.StatusBadRequest, 7400, "Invalid request body: etag must be the MD5 of the file, 32 lower-case hex characters")
		return
	}
	if s.busyWith(c, d) {
		return
	}
	st := s.imports()
	now := s.now()
	st.mu.Lock()
	var known *uploadFile
	for id, u := range st.uploads {
		if now.After(u.expires) && u.md5 == "" {
			os.Remove(u.path)
			delete(st.uploads, id)
			continue
		}
		if u.dbUUID == d.UUID && u.md5 == req.Etag {
			known = u
		}
	}
	if known == nil {
		u := &uploadFile{
			id: randomID(), dbUUID: d.UUID, etag: req.Etag,
			filename: fmt.Sprintf("%s-%s.sql", d.UUID, req.Etag), expires: now.Add(s.opts.URLTTL),
		}
		u.path = filepath.Join(s.dir, "dumps", "upload-"+u.id+".sql")
		st.uploads[u.id] = u
		st.mu.Unlock()
		s.writeResult(c, http.StatusOK, importResponse{
			Success: true, Type: "import", Filename: u.filename, UploadURL: s.uploadURL(c.r, u),
		}, nil)
		return
	}
	st.mu.Unlock()
	s.startImport(c, d, known, "File already uploaded. Processing.")
}

func (s *Server) importIngest(c *call, d *database, req importRequest) {
	st := s.imports()
	st.mu.Lock()
	var u *uploadFile
	for _, o := range st.uploads {
		if o.dbUUID == d.UUID && o.filename == req.Filename {
			u = o
		}
	}
	st.mu.Unlock()
	switch {
	case u == nil:
		s.writeResult(c, http.StatusOK, importResponse{Error: "Unknown filename: init the import first"}, nil)
		return
	case u.md5 == "":
		s.writeResult(c, http.StatusOK, importResponse{Error: "File not uploaded: PUT it to the upload URL first"}, nil)
		return
	case u.md5 != req.Etag || u.etag != req.Etag:
		s.writeResult(c, http.StatusOK, importResponse{Error: fmt.Sprintf("Etag mismatch: the uploaded file has MD5 %s, not %s", u.md5, req.Etag)}, nil)
		return
	}
	if s.busyWith(c, d) {
		return
	}
	s.startImport(c, d, u, "")
}

// startImport runs the uploaded file into d and answers the polling-shaped
// "active" response.
func (s *Server) startImport(c *call, d *database, u *uploadFile, msg string) {
	st := s.imports()
	st.mu.Lock()
	failing := st.failNext[d.UUID]
	delete(st.failNext, d.UUID)
	st.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
		return
	}
	ctx := c.r.Context()
	at, err := s.bookmarkNow(ctx, d)
	if err != nil {
		s.log.Error("import", "uuid", d.UUID, "err", err)
		s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
		return
	}
	job := &importJob{bookmark: at}
	if failing {
		job.failMsg = "SQLITE_CONSTRAINT: injected import failure"
	} else {
		res, err := s.runImport(ctx, d, u.path)
		if err != nil {
			job.failMsg = err.Error()
		} else {
			job.result = res
		}
	}
	st.mu.Lock()
	job.remaining = st.polls
	st.jobs[d.UUID] = job
	st.mu.Unlock()
	msgs := []string{}
	if msg != "" {
		msgs = append(msgs, msg)
	}
	msgs = append(msgs, "Ingesting "+u.filename)
	s.log.Info("import started", "uuid", d.UUID, "bookmark", at, "failed", job.failMsg != "")
	s.writeResult(c, http.StatusAccepted, importResponse{Success: true, Type: "import", AtBookmark: at, Status: StatusActive, Messages: msgs}, nil)
}

func (s *Server) importPoll(c *call, d *database, req importRequest) {
	st := s.imports()
	st.mu.Lock()
	job := st.jobs[d.UUID]
	if job == nil || req.CurrentBookmark == "" || job.bookmark != req.CurrentBookmark {
		st.mu.Unlock()
		s.writeResult(c, http.StatusOK, importResponse{Error: MessageNotImporting}, nil)
		return
	}
	if job.remaining > 0 {
		job.remaining--
		st.mu.Unlock()
		s.writeResult(c, http.StatusAccepted, importResponse{Success: true, Type: "import", AtBookmark: job.bookmark, Status: StatusActive, Messages: []string{"Processing"}}, nil)
		return
	}
	delete(st.jobs, d.UUID)
	st.mu.Unlock()
	resp := importResponse{Success: true, Type: "import", AtBookmark: job.bookmark, Messages: []string{}}
	if job.failMsg != "" {
		resp.Status, resp.Error = StatusError, job.failMsg
	} else {
		resp.Status, resp.Result = StatusComplete, job.result
		resp.Messages = append(resp.Messages, fmt.Sprintf("Executed %d queries", job.result.NumQueries))
	}
	s.writeResult(c, http.StatusOK, resp, nil)
}

// bookmarkNow is d's current bookmark. Call with d.mu held.
func (s *Server) bookmarkNow(ctx context.Context, d *database) (string, error) {
	_, sum, err := dumpSQLite(ctx, d.db, io.Discard, dumpOptions{})
	var vt *virtualTableError
	if errors.As(err, &vt) {
		sum, err = s.schemaHash(ctx, d)
	}
	if err != nil {
		return "", err
	}
	return d.currentBookmark(sum), nil
}

// importError is why an import failed; its text is what D1 reports.
type importError struct{ msg string }

func (e *importError) Error() string { return e.msg }

// runImport executes the file at path in one transaction. Call with d.mu held.
func (s *Server) runImport(ctx context.Context, d *database, path string) (*importResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	start := time.Now()
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var before int64
	if err := conn.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&before); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return nil, err
	}
	n, execErr := execStatements(ctx, f, func(stmt string) error {
		_, err := conn.ExecContext(ctx, stmt)
		return err
	})
	if execErr != nil {
		conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck
		return nil, execErr
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck
		return nil, &importError{fmt.Sprintf("%v (at commit)", err)}
	}
	res := &importResult{NumQueries: n}
	var after int64
	if err := conn.QueryRowContext(ctx, `SELECT total_changes(), (SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())`).Scan(&after, &res.Meta.SizeAfter); err != nil {
		return nil, err
	}
	res.Meta.Changes = after - before
	res.Meta.RowsWritten = after - before
	res.Meta.ChangedDB = after != before || n > 0
	res.Meta.Duration = float64(time.Since(start).Microseconds()) / 1000
	conn.Close() // the pool has one connection: bookmarkNow needs it
	d.version++
	d.contentHash = nil
	if res.FinalBookmark, err = s.bookmarkNow(ctx, d); err != nil {
		return nil, err
	}
	return res, nil
}

// execStatements feeds each statement of r to exec and returns how many
// ran. A statement ends at a ';' that makes the text so far complete by
// SQLite's sqlite3_complete (which knows strings, comments and trigger
// bodies).
func execStatements(ctx context.Context, r io.Reader, exec func(string) error) (int64, error) {
	tls := libc.NewTLS()
	defer tls.Close()
	complete := func(s string) bool {
		p, err := libc.CString(s)
		if err != nil {
			return false
		}
		defer libc.Xfree(tls, p)
		return sqlite3.Xsqlite3_complete(tls, p) != 0
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		buf []byte
		n   int64
	)
	run := func(stmt string) error {
		if len(stmt) > MaxStatementBytes {
			return &importError{fmt.Sprintf("%s (statement %d is %d bytes; the limit is %d)", MessageTooBig, n+1, len(stmt), MaxStatementBytes)}
		}
		if isTransactionControl(stmt) {
			return &importError{MessageTransaction}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := exec(stmt); err != nil {
			return &importError{fmt.Sprintf("%v: in statement %d: %.200s", err, n+1, stmt)}
		}
		n++
		return nil
	}
	for {
		chunk, err := br.ReadSlice(';')
		buf = append(buf, chunk...)
		if len(buf) > 0 && buf[len(buf)-1] == ';' {
			if len(buf) > MaxStatementBytes+1 {
				return n, &importError{fmt.Sprintf("%s (statement %d is over %d bytes)", MessageTooBig, n+1, MaxStatementBytes)}
			}
			if complete(string(buf)) {
				if stmt := strings.TrimSpace(string(buf)); stmt != ";" {
					if err := run(stmt); err != nil {
						return n, err
					}
				}
				buf = buf[:0]
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			if len(buf) > MaxStatementBytes+1 {
				return n, &importError{fmt.Sprintf("%s (statement %d is over %d bytes)", MessageTooBig, n+1, MaxStatementBytes)}
			}
		case errors.Is(err, io.EOF):
			if rest := strings.TrimSpace(string(buf)); rest != "" && !onlyComments(rest) {
				if err := run(rest); err != nil {
					return n, err
				}
			}
			return n, nil
		default:
			return n, err
		}
	}
}

// skipComments returns s without its leading whitespace and SQL comments
// ("" if that is all it holds).
func skipComments(s string) string {
	for s = strings.TrimSpace(s); ; s = strings.TrimSpace(s) {
		var end string
		switch {
		case strings.HasPrefix(s, "--"):
			end = "\n"
		case strings.HasPrefix(s, "/*"):
			end = "*/"
		default:
			return s
		}
		i := strings.Index(s, end)
		if i < 0 {
			return ""
		}
		s = s[i+len(end):]
	}
}

// onlyComments reports whether s holds nothing but SQL comments.
func onlyComments(s string) bool { return skipComments(s) == "" }

// isTransactionControl reports whether stmt opens, ends or marks a
// transaction, which D1 refuses in imports.
func isTransactionControl(stmt string) bool {
	stmt = skipComments(stmt)
	end := strings.IndexFunc(stmt, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	if end < 0 {
		end = len(stmt)
	}
	switch strings.ToUpper(stmt[:end]) {
	case "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
		return true
	}
	return false
}

// uploadURL is a signed PUT URL for u, pointing back at the host the client called.
func (s *Server) uploadURL(r *http.Request, u *uploadFile) string {
	return s.presign(r, "/__emu/uploads/"+u.id, u.expires)
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st := s.imports()
	st.mu.Lock()
	u := st.uploads[id]
	st.mu.Unlock()
	dbID := ""
	if u != nil {
		dbID = u.dbUUID
	}
	c := s.newCall(w, r, EndpointUpload, dbID)
	defer s.finish(c)
	if c.fault = s.takeFault(c.endpoint, c.dbID); c.fault != nil && s.transportFault(c, true) {
		return
	}
	if !s.checkPresigned(c, r) {
		return
	}
	switch {
	case u == nil:
		s.writeXMLError(c, http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist.")
		return
	case r.ContentLength < 0:
		s.writeXMLError(c, http.StatusLengthRequired, "MissingContentLength", "You must provide the Content-Length HTTP header.")
		return
	case r.ContentLength > MaxImportBytes:
		s.writeXMLError(c, http.StatusRequestEntityTooLarge, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
		return
	}
	f, err := os.Create(u.path)
	if err != nil {
		s.writeXMLError(c, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		return
	}
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), r.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != r.ContentLength {
		os.Remove(u.path)
		s.writeXMLError(c, http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
		return
	}
	sum := hex.EncodeToString(h.Sum(nil))
	st.mu.Lock()
	u.md5, u.size = sum, n
	st.mu.Unlock()
	c.w.Header().Set("ETag", `"`+sum+`"`)
	c.w.WriteHeader(http.StatusOK)
}
