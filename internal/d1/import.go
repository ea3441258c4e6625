package d1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"

	"github.com/d1backup/d1backup/internal/clock"
)

// DefaultImportPollInterval is the wait between import polls when
// ImportOptions.PollInterval is zero.
const DefaultImportPollInterval = time.Second

// ImportOptions tune Import.
type ImportOptions struct {
	// PollInterval is the wait between polls; DefaultImportPollInterval if 0.
	PollInterval time.Duration
	// OnMessage, if set, receives D1's log lines as they arrive.
	OnMessage func(msg string)
}

// CreateDatabase creates an empty database named name.
func (c *Client) CreateDatabase(ctx context.Context, name string) (Database, error) {
	const op = "create database"
	if name == "" {
		return Database{}, errors.New("d1: create database: empty name")
	}
	var params cfd1.DatabaseNewParams
	params.AccountID.Value, params.AccountID.Present = c.cfg.AccountID, true
	params.Name.Value, params.Name.Present = name, true
	res, err := c.db.New(ctx, params)
	if err != nil {
		return Database{}, c.classify(ctx, op, name, err)
	}
	if res.UUID == "" {
		return Database{}, &RequestError{Op: op, StatusCode: http.StatusOK, Message: "answer has no uuid"}
	}
	return Database{
		UUID: res.UUID, Name: res.Name, CreatedAt: res.CreatedAt,
		FileSize: int64(res.FileSize), NumTables: int(res.NumTables),
	}, nil
}

// ImportFile is the SQL to import: Size bytes read from Body, whose MD5 (hex)
// is MD5. Body is read once per upload attempt, from offset 0.
type ImportFile struct {
	Body io.ReaderAt
	Size int64
	MD5  string
}

// ImportResult is what D1 reports of a completed import.
type ImportResult struct {
	// Bookmark identifies the import while it runs.
	Bookmark string `json:"bookmark"`
	// FinalBookmark is the Time Travel restore point right after the import.
	FinalBookmark string  `json:"final_bookmark"`
	NumQueries    int64   `json:"num_queries"`
	RowsWritten   int64   `json:"rows_written"`
	RowsRead      int64   `json:"rows_read"`
	SizeAfter     int64   `json:"size_after"`
	DurationMS    float64 `json:"duration_ms"`
	// Uploaded is false when D1 already had the file (init answered
	// without an upload URL).
	Uploaded bool     `json:"uploaded"`
	Polls    int      `json:"polls"`
	Messages []string `json:"messages,omitempty"`
}

// Import runs D1's import protocol: init with the MD5 as etag, PUT the SQL to
// the upload URL, ingest, then poll until the import completes or fails. The
// database serves no queries meanwhile. The import is atomic: on error D1 has
// rolled it back.
func (c *Client) Import(ctx context.Context, databaseID string, f ImportFile, opts ImportOptions) (ImportResult, error) {
	if f.Body == nil || f.Size < 0 || !hex32.MatchString(f.MD5) {
		return ImportResult{}, errors.New("d1: import: needs a body, its size and its MD5 as 32 lower-case hex characters")
	}
	var out ImportResult
	initBody := importBody{Action: "init", Etag: f.MD5}
	res, err := c.importCall(ctx, "import init", databaseID, initBody)
	if err != nil {
		return out, err
	}
	if res.UploadURL != "" {
		if res.Filename == "" {
			return out, &ImportFailedError{Database: databaseID, Message: "init answered an upload URL but no filename"}
		}
		if err := c.upload(ctx, res.UploadURL, f); err != nil {
			return out, err
		}
		out.Uploaded = true
		ingest := importBody{Action: "ingest", Etag: f.MD5, Filename: res.Filename}
		if res, err = c.importCall(ctx, "import ingest", databaseID, ingest); err != nil {
			return out, err
		}
	}
	interval := opts.PollInterval
	if interval <= 0 {
		interval = DefaultImportPollInterval
	}
	for {
		out.Messages = append(out.Messages, res.Messages...)
		if opts.OnMessage != nil {
			for _, m := range res.Messages {
				opts.OnMessage(m)
			}
		}
		if res.AtBookmark != "" {
			out.Bookmark = res.AtBookmark
		}
		switch res.Status {
		case "complete":
			r := res.Result
			out.FinalBookmark = r.FinalBookmark
			out.NumQueries = int64(r.NumQueries)
			out.RowsWritten = int64(r.Meta.RowsWritten)
			out.RowsRead = int64(r.Meta.RowsRead)
			out.SizeAfter = int64(r.Meta.SizeAfter)
			out.DurationMS = r.Meta.Duration
			return out, nil
		case "error":
			return out, &ImportFailedError{Database: databaseID, Message: importError(res)}
		}
		if out.Bookmark == "" {
			return out, &ImportFailedError{Database: databaseID, Message: fmt.Sprintf("import answer with status %q has no at_bookmark to poll", res.Status)}
		}
		if err := clock.Sleep(ctx, interval); err != nil {
			return out, fmt.Errorf("d1: import poll: %w", err)
		}
		out.Polls++
		poll := importBody{Action: "poll", CurrentBookmark: out.Bookmark}
		if res, err = c.importCall(ctx, "import poll", databaseID, poll); err != nil {
			return out, err
		}
	}
}

type importBody struct {
	Action          string
	Etag            string
	Filename        string
	CurrentBookmark string
}

// importCall makes one import API call and turns success:false answers into
// errors.
func (c *Client) importCall(ctx context.Context, op, databaseID string, b importBody) (*cfd1.DatabaseImportResponse, error) {
	var body cfd1.DatabaseImportParamsBody
	body.Action.Value, body.Action.Present = cfd1.DatabaseImportParamsBodyAction(b.Action), true
	if b.Etag != "" {
		body.Etag.Value, body.Etag.Present = b.Etag, true
	}
	if b.Filename != "" {
		body.Filename.Value, body.Filename.Present = b.Filename, true
	}
	if b.CurrentBookmark != "" {
		body.CurrentBookmark.Value, body.CurrentBookmark.Present = b.CurrentBookmark, true
	}
	var params cfd1.DatabaseImportParams
	params.AccountID.Value, params.AccountID.Present = c.cfg.AccountID, true
	params.Body = body
	res, err := c.db.Import(ctx, databaseID, params)
	if err != nil {
		return nil, c.classify(ctx, op, databaseID, err)
	}
	if !res.Success {
		msg := importError(res)
		switch {
		case strings.Contains(msg, "Not currently importing"):
			return nil, &ImportFailedError{Database: databaseID, Message: msg + " (the import is no longer running and its outcome is unknown: check the database before retrying)"}
		case strings.Contains(msg, "Currently processing"), strings.Contains(msg, "long-running"):
			return nil, &ExportBusyError{Op: op, Database: databaseID, Message: msg}
		case msg == "":
			msg = "D1 answered success=false with no message"
		}
		return nil, &ImportFailedError{Database: databaseID, Message: msg}
	}
	return res, nil
}

// importError gathers D1's reasons: "error" (string) and/or "errors"
// (string[]), which the SDK's type does not model.
func importError(res *cfd1.DatabaseImportResponse) string {
	var parts []string
	if res.Error != "" {
		parts = append(parts, res.Error)
	}
	if f, ok := res.JSON.ExtraFields["errors"]; ok && f.Raw() != "" {
		var list []any
		if json.Unmarshal([]byte(f.Raw()), &list) == nil {
			for _, e := range list {
				switch v := e.(type) {
				case string:
					parts = append(parts, v)
				case map[string]any:
					if m, ok := v["message"].(string); ok {
						parts = append(parts, m)
					}
				}
			}
		}
	}
	if len(parts) == 0 && res.Status == "error" {
		return "import ended in status error with no message"
	}
	return strings.Join(parts, "; ")
}

// upload PUTs the SQL to the upload URL (a bearer credential: never in
// errors) with no Cloudflare auth, and checks the ETag D1's storage returns.
// Transport failures and 5xx are retried up to Config.MaxRetries times, then
// reported as an UnavailableError.
func (c *Client) upload(ctx context.Context, uploadURL string, f ImportFile) error {
	const op = "import upload"
	u, err := url.Parse(uploadURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return &UploadError{Op: op, Err: errors.New("upload URL is not an http(s) URL")}
	}
	var last error
	for attempt := 0; attempt <= c.cfg.MaxRetries; attempt++ {
		if attempt > 0 {
			if err := clock.Sleep(ctx, time.Duration(attempt)*500*time.Millisecond); err != nil {
				return fmt.Errorf("d1: %s: %w", op, err)
			}
		}
		retry, err := c.uploadOnce(ctx, uploadURL, f)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("d1: %s: %w", op, ctx.Err())
		}
		last = err
		if !retry {
			break
		}
	}
	return last
}

func (c *Client) uploadOnce(ctx context.Context, uploadURL string, f ImportFile) (retry bool, err error) {
	const op = "import upload"
	newBody := func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(f.Body, 0, f.Size)), nil }
	body, _ := newBody()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, uploadURL, body)
	if err != nil {
		return false, &UploadError{Op: op, Err: errors.New("cannot build request")}
	}
	req.ContentLength = f.Size
	req.GetBody = newBody
	req.Header.Set("Content-Type", "application/sql")
	if f.Size == 0 {
		req.Body = http.NoBody
	}
	res, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return true, &UnavailableError{Op: op, Err: stripURL(err)}
	}
	defer drain(res.Body)
	switch {
	case res.StatusCode == http.StatusOK:
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
		return true, &UnavailableError{Op: op, Err: fmt.Errorf("HTTP %d", res.StatusCode)}
	case res.StatusCode == http.StatusForbidden:
		return false, &UploadError{Op: op, StatusCode: res.StatusCode, Err: errors.New("upload URL refused (HTTP 403): it has expired or is invalid; start the import again")}
	default:
		return false, &UploadError{Op: op, StatusCode: res.StatusCode, Err: fmt.Errorf("HTTP %d", res.StatusCode)}
	}
	etag := strings.Trim(res.Header.Get("ETag"), `"`)
	switch {
	case etag == "":
		return false, &UploadError{Op: op, StatusCode: res.StatusCode, Err: errors.New("the upload answer has no ETag to check the upload against")}
	case !strings.EqualFold(etag, f.MD5):
		return true, &UploadError{Op: op, StatusCode: res.StatusCode, Err: fmt.Errorf("ETag mismatch: storage received MD5 %s, the file has %s", etag, f.MD5)}
	}
	return false, nil
}

// ImportFailedError is an import D1 refused or that ended in status
// "error" (a bad statement, a limit); D1 rolled it back. Permanent: the same
// file fails the same way.
type ImportFailedError struct {
	Database string
	Message  string
}

func (e *ImportFailedError) Error() string {
	return fmt.Sprintf("d1: import into database %s failed: %s", e.Database, e.Message)
}

// UploadError is a PUT of the import file that storage refused (expired
// URL, 4xx) or whose ETag does not match the file's MD5 (the bytes changed on
// the way). Passing failures (5xx, resets) are UnavailableErrors instead.
type UploadError struct {
	Op         string
	StatusCode int // 0 when no response arrived
	Err        error
}

func (e *UploadError) Error() string { return fmt.Sprintf("d1: %s: %v", e.Op, e.Err) }
func (e *UploadError) Unwrap() error { return e.Err }
