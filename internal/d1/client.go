// Package d1 talks to the Cloudflare D1 REST API through the official Go SDK
// (cloudflare-go v6): export a database, download its dump, list and look up
// databases. It turns every outcome the API has into a value or one of the
// typed errors in errors.go, so callers never parse messages.
package d1

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"
	"github.com/cloudflare/cloudflare-go/v6/option"
)

// Config configures a Client. NewConfig fills in the defaults; New uses
// the values as they are.
type Config struct {
	AccountID string
	APIToken  string
	// BaseURL is the API root, e.g. https://api.cloudflare.com/client/v4.
	BaseURL string
	// HTTPClient serves API calls and dump downloads; http.DefaultClient if nil.
	HTTPClient *http.Client
	// MaxRetries bounds the SDK's own retries of one call (transport errors,
	// 408, 409, 429, 5xx); 0 means none. The SDK's default of 10 with no cap
	// on Retry-After could keep a call alive for an hour.
	MaxRetries int
	// RequestTimeout bounds each attempt of an API call. Default 30 s.
	RequestTimeout time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out by itself;
	// a longer one is returned at once as a RateLimitError so the caller (a
	// Step Functions Retry, a person) decides. Default 30 s.
	MaxRetryAfter time.Duration
	// DownloadHeaderTimeout bounds the wait for the dump's response headers.
	// Default 60 s. The body itself is bounded only by the caller's context.
	DownloadHeaderTimeout time.Duration
}

// Defaults NewConfig applies.
const (
	DefaultMaxRetries            = 3
	DefaultRequestTimeout        = 30 * time.Second
	DefaultMaxRetryAfter         = 30 * time.Second
	DefaultDownloadHeaderTimeout = 60 * time.Second
)

// Client is a D1 API client for one account.
type Client struct {
	cfg Config
	db  *cfd1.DatabaseService
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

// NewConfig returns the configuration for an account with the defaults.
func NewConfig(accountID, apiToken, baseURL string) Config {
	return Config{
		AccountID: accountID, APIToken: apiToken, BaseURL: baseURL,
		MaxRetries:            DefaultMaxRetries,
		RequestTimeout:        DefaultRequestTimeout,
		MaxRetryAfter:         DefaultMaxRetryAfter,
		DownloadHeaderTimeout: DefaultDownloadHeaderTimeout,
	}
}

// New validates cfg and builds a Client. It reads no environment: the
// SDK's NewClient would pick up CLOUDFLARE_API_KEY and friends behind our back.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.AccountID == "":
		return nil, errors.New("d1: account ID is empty")
	case !hex32.MatchString(cfg.AccountID):
		return nil, fmt.Errorf("d1: account ID %q is not 32 lower-case hex characters (find it in the dashboard URL or under Workers & Pages > Account details)", cfg.AccountID)
	case cfg.APIToken == "":
		return nil, errors.New("d1: API token is empty")
	case cfg.BaseURL == "":
		return nil, errors.New("d1: API base URL is empty")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("d1: API base URL %q is not an http(s) URL", cfg.BaseURL)
	}
	switch {
	case cfg.MaxRetries < 0:
		return nil, fmt.Errorf("d1: MaxRetries %d is negative", cfg.MaxRetries)
	case cfg.RequestTimeout <= 0, cfg.MaxRetryAfter <= 0, cfg.DownloadHeaderTimeout <= 0:
		return nil, errors.New("d1: RequestTimeout, MaxRetryAfter and DownloadHeaderTimeout must be positive (start from NewConfig)")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	base := strings.TrimSuffix(cfg.BaseURL, "/") + "/"
	svc := cfd1.NewDatabaseService(
		option.WithBaseURL(base),
		option.WithAPIToken(cfg.APIToken),
		option.WithHTTPClient(cfg.HTTPClient),
		option.WithMaxRetries(cfg.MaxRetries),
		option.WithRequestTimeout(cfg.RequestTimeout),
		option.WithMiddleware(capRetryAfter(cfg.MaxRetryAfter)),
	)
	return &Client{cfg: cfg, db: svc}, nil
}

// capRetryAfter stops the SDK from sleeping through a long Retry-After (after
// a burst Cloudflare answers 429 for five minutes): such a response comes back
// to us as an error instead.
func capRetryAfter(limit time.Duration) option.Middleware {
	return func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		res, err := next(req)
		if err == nil && res.StatusCode == http.StatusTooManyRequests {
			if d, ok := retryAfter(res.Header); !ok || d > limit {
				res.Header.Set("x-should-retry", "false")
			}
		}
		return res, err
	}
}

func retryAfter(h http.Header) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t), true
	}
	return 0, false
}

// ExportStatus is D1's answer to an export call.
type ExportStatus struct {
	Bookmark string
	// Status is "active", "complete" or "error".
	Status string
	// Error is D1's message when Status is "error".
	Error    string
	Messages []string
	// Filename and SignedURL are set when Status is "complete". SignedURL is
	// a bearer credential valid for an hour: never log it.
	Filename  string
	SignedURL string
}

// StartExport starts an export of the database. A small database may come
// back complete already.
func (c *Client) StartExport(ctx context.Context, databaseID string) (ExportStatus, error) {
	return c.export(ctx, "start export", databaseID, "")
}

// PollExport asks for the state of the export at bookmark. An export must be
// polled continually or D1 cancels it.
func (c *Client) PollExport(ctx context.Context, databaseID, bookmark string) (ExportStatus, error) {
	if bookmark == "" {
		return ExportStatus{}, errors.New("d1: poll export: empty bookmark")
	}
	return c.export(ctx, "poll export", databaseID, bookmark)
}

func (c *Client) export(ctx context.Context, op, databaseID, bookmark string) (ExportStatus, error) {
	// The SDK's field constructor lives in its root package, which would pull
	// every Cloudflare service into our binaries; set the fields directly.
	var params cfd1.DatabaseExportParams
	params.AccountID.Value, params.AccountID.Present = c.cfg.AccountID, true
	params.OutputFormat.Value, params.OutputFormat.Present = cfd1.DatabaseExportParamsOutputFormatPolling, true
	if bookmark != "" {
		params.CurrentBookmark.Value, params.CurrentBookmark.Present = bookmark, true
	}
	res, err := c.db.Export(ctx, databaseID, params)
	if err != nil {
		return ExportStatus{}, c.classify(ctx, op, databaseID, err)
	}
	if !res.Success {
		msg := res.Error
		switch {
		case strings.Contains(msg, "Not currently exporting"):
			return ExportStatus{}, &ExportNotRunningError{Op: op, Database: databaseID, Bookmark: bookmark, Message: msg}
		case strings.Contains(msg, "Currently processing"), strings.Contains(msg, "long-running"):
			return ExportStatus{}, &ExportBusyError{Op: op, Database: databaseID, Message: msg}
		case msg == "":
			msg = "D1 answered success=false with no message"
		}
		return ExportStatus{}, &ExportFailedError{Database: databaseID, Message: msg}
	}
	st := ExportStatus{
		Bookmark:  res.AtBookmark,
		Status:    string(res.Status),
		Error:     res.Error,
		Messages:  res.Messages,
		Filename:  res.Result.Filename,
		SignedURL: res.Result.SignedURL,
	}
	switch st.Status {
	case "active", "error":
	case "complete":
		if st.SignedURL == "" {
			return ExportStatus{}, &ExportFailedError{Database: databaseID, Message: "export complete but no signed_url in result.result"}
		}
	default:
		return ExportStatus{}, &ExportFailedError{Database: databaseID, Message: fmt.Sprintf("unknown export status %q", st.Status)}
	}
	if st.Bookmark == "" && bookmark != "" {
		st.Bookmark = bookmark
	}
	if st.Bookmark == "" {
		return ExportStatus{}, &ExportFailedError{Database: databaseID, Message: "export answer has no at_bookmark"}
	}
	return st, nil
}

// classify maps an SDK error to this package's error types.
func (c *Client) classify(ctx context.Context, op, database string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("d1: %s: %w", op, ctx.Err())
	}
	var apiErr *cfd1.Error
	if errors.As(err, &apiErr) {
		msg := apiMessage(apiErr)
		code := apiErr.StatusCode
		switch {
		case code == http.StatusTooManyRequests:
			var d time.Duration
			if apiErr.Response != nil {
				d, _ = retryAfter(apiErr.Response.Header)
			}
			return &RateLimitError{Op: op, RetryAfter: d}
		case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusConflict:
			return &UnavailableError{Op: op, Err: fmt.Errorf("HTTP %d: %s", code, msg)}
		case code == http.StatusUnauthorized, code == http.StatusForbidden:
			return &AuthError{Op: op, StatusCode: code, Message: msg}
		case code == http.StatusNotFound:
			return &NotFoundError{Op: op, Database: database, Message: msg}
		default:
			return &RequestError{Op: op, StatusCode: code, Message: msg}
		}
	}
	// Per-attempt timeouts, resets and refused connections: the SDK has
	// already retried them. Strip URLs so nothing sensitive rides along.
	return &UnavailableError{Op: op, Err: stripURL(err)}
}

func apiMessage(e *cfd1.Error) string {
	var parts []string
	for _, d := range e.Errors {
		parts = append(parts, fmt.Sprintf("%d %s", d.Code, d.Message))
	}
	if len(parts) == 0 {
		return http.StatusText(e.StatusCode)
	}
	return strings.Join(parts, "; ")
}

// stripURL removes the URL a *url.Error carries: for dump downloads it is a
// signed (bearer) URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s: timeout: %w", ue.Op, ue.Err)
		}
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// RequestError is an API answer this package has no better class for (other
// 4xx): a bug or an unsupported request, not worth retrying.
type RequestError struct {
	Op         string
	StatusCode int
	Message    string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("d1: %s: Cloudflare refused the request (HTTP %d: %s)", e.Op, e.StatusCode, e.Message)
}
