package d1emu

// Import, as the D1 REST API has it:
//
//	POST .../d1/database/{id}/import {"action":"init","etag":md5}
//	     → {upload_url, filename}, or, when a file with that MD5 was uploaded
//	       for this database before, an import already started (polling-shaped)
//	PUT  upload_url (no auth; signed, expires like dump URLs)
//	     → 200 with ETag "<md5 of the bytes received>"
//	POST .../import {"action":"ingest","etag","filename"} → status "active"
//	POST .../import {"action":"poll","current_bookmark"}
//	     → "active" for Options.ImportPolls polls, then "complete"
//	       (result.final_bookmark, num_queries, meta) or "error"; after that
//	       "Not currently importing anything."
//
// Ingest runs the whole file in one transaction (rolled back on any error)
// while holding the database, so the import is atomic; the import counts as
// running, and exports and queries answer busy, until its outcome has been
// polled. Limits enforced: upload over MaxImportBytes (HTTP 413), a
// statement over MaxStatementBytes, transaction control statements, an
// uploaded file whose MD5 is not the etag. statementReader splits the file.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxImportBytes is D1's import file limit (one PUT).
const MaxImportBytes = 5 << 30

// Messages of the import path.
const (
	MessageNotImporting = "Not currently importing anything."
	MessageImportBusy   = "Currently processing a long-running import. Please wait and try again."
	MessageTransaction  = "To execute a transaction, please use the state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT statements."
)

// importState is a Server's import bookkeeping.
type importState struct {
	mu       sync.Mutex
	polls    int                    // "active" answers to polls before the outcome
	failNext map[string]bool        // database UUID → the next import fails (FaultImportError)
	uploads  map[string]*uploadFile // by id
	jobs     map[string]*importJob  // by database UUID
	runs     []Import
}

func (st *importState) init(polls int) {
	st.polls = polls
	st.failNext = map[string]bool{}
	st.uploads = map[string]*uploadFile{}
	st.jobs = map[string]*importJob{}
}

// SetImportPolls makes imports answer "active" to n polls before their
// outcome (Options.ImportPolls sets it at the start).
func (s *Server) SetImportPolls(n int) {
	s.imp.mu.Lock()
	defer s.imp.mu.Unlock()
	s.imp.polls = max(n, 0)
}

// Import is one import the emulator ran (an ingest), for tests that check
// what D1 would have received.
type Import struct {
	Database string    `json:"database"` // UUID
	Filename string    `json:"filename"`
	Bytes    int64     `json:"bytes"` // of the uploaded file
	At       time.Time `json:"at"`
	// Statements is how many statements ran (all of them, unless Error).
	Statements int64 `json:"statements"`
	// LargestStatement is the size in bytes of the largest statement read,
	// from its first token to its ';', a refused one included (then at
	// least MaxStatementBytes+1).
	LargestStatement int    `json:"largest_statement"`
	Error            string `json:"error,omitempty"`
}

// Imports lists the imports run so far, oldest first.
func (s *Server) Imports() []Import {
	s.imp.mu.Lock()
	defer s.imp.mu.Unlock()
	return slices.Clone(s.imp.runs)
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
// outcome yet; export requests and queries consult it.
func (s *Server) importBusy(dbUUID string) bool {
	s.imp.mu.Lock()
	defer s.imp.mu.Unlock()
	_, ok := s.imp.jobs[dbUUID]
	return ok
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
		st := &s.imp
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
	st := &s.imp
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
	st := &s.imp
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
	st := &s.imp
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
	run := Import{Database: d.UUID, Filename: u.filename, Bytes: u.size, At: s.now()}
	if failing {
		job.failMsg = "SQLITE_CONSTRAINT: injected import failure"
	} else {
		job.result, run.Statements, run.LargestStatement, err = s.runImport(ctx, d, u.path)
		if err != nil {
			job.failMsg = err.Error()
		}
	}
	run.Error = job.failMsg
	st.mu.Lock()
	job.remaining = st.polls
	st.jobs[d.UUID] = job
	st.runs = append(st.runs, run)
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
	st := &s.imp
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

// importError is why an import failed; its text is what D1 reports.
type importError struct{ msg string }

func (e *importError) Error() string { return e.msg }

// runImport executes the file at path in one transaction; it also says
// how many statements ran and the size of the largest one read. Call with
// d.mu held.
func (s *Server) runImport(ctx context.Context, d *database, path string) (*importResult, int64, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	start := time.Now()
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	defer conn.Close()
	var before int64
	if err := conn.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&before); err != nil {
		return nil, 0, 0, err
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return nil, 0, 0, err
	}
	sr := newStatementReader(f)
	defer sr.Close()
	n, execErr := execStatements(ctx, sr, func(stmt string) error {
		_, err := conn.ExecContext(ctx, stmt)
		return err
	})
	if execErr != nil {
		conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck
		return nil, n, sr.largest, execErr
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck
		return nil, n, sr.largest, &importError{fmt.Sprintf("%s (at commit)", d1Message(err))}
	}
	res := &importResult{NumQueries: n}
	var after int64
	if err := conn.QueryRowContext(ctx, `SELECT total_changes(), (SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())`).Scan(&after, &res.Meta.SizeAfter); err != nil {
		return nil, n, sr.largest, err
	}
	res.Meta.Changes = after - before
	res.Meta.RowsWritten = after - before
	res.Meta.ChangedDB = after != before || n > 0
	res.Meta.Duration = float64(time.Since(start).Microseconds()) / 1000
	conn.Close() // the pool has one connection: bookmarkNow needs it
	s.advance(d)
	if res.FinalBookmark, err = s.bookmarkNow(ctx, d); err != nil {
		return nil, n, sr.largest, err
	}
	return res, n, sr.largest, nil
}

// execStatements feeds each statement to exec and returns how many ran.
// D1 refuses transaction control in an import.
func execStatements(ctx context.Context, sr *statementReader, exec func(string) error) (int64, error) {
	var n int64
	for {
		stmt, err := sr.next()
		var tl *tooLongError
		switch {
		case errors.Is(err, io.EOF):
			return n, nil
		case errors.As(err, &tl):
			return n, &importError{tl.Error()}
		case err != nil:
			return n, err
		case isTransactionControl(stmt):
			return n, &importError{MessageTransaction}
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := exec(stmt); err != nil {
			return n, &importError{fmt.Sprintf("%s (in statement %d: %.200s)", d1Message(err), n+1, stmt)}
		}
		n++
	}
}
