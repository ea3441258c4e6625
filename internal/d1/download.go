package d1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Download is an open dump download.
type Download struct {
	// Body yields the dump from Offset on. Reading it past the end reports a
	// DownloadError if fewer bytes than Size arrived.
	Body io.ReadCloser
	// Offset is where Body starts in the dump.
	Offset int64
	// Size is how many bytes Body yields, or -1 when the server did not say.
	Size int64
	// Total is the whole dump's size, or -1 when the server did not say.
	Total int64
	// RangeIgnored is true when the server answered a ranged request with
	// the whole dump: the client read and dropped the first Offset bytes.
	RangeIgnored bool
}

// RangeError: the dump is shorter than the offset a download asked for
// (HTTP 416), so it is not the dump a resumed upload began with.
type RangeError struct {
	Offset int64
	// Total is the dump's size, or -1 when the server did not say.
	Total int64
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("d1: download dump: the dump (%d bytes) has no byte at offset %d", e.Total, e.Offset)
}

// Download opens the signed dump URL with a plain GET and no Cloudflare
// credentials: the URL is itself the credential, so it never appears in
// errors. From an offset above 0 it asks for the rest of the dump (HTTP
// Range); a server that ignores Range sends it whole, and the first offset
// bytes are read and dropped here.
func (c *Client) Download(ctx context.Context, signedURL string, offset int64) (*Download, error) {
	const op = "download dump"
	u, err := url.Parse(signedURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, &DownloadError{Op: op, Err: errors.New("signed URL is not an http(s) URL")}
	}
	if offset < 0 {
		return nil, &DownloadError{Op: op, Err: fmt.Errorf("negative offset %d", offset)}
	}
	hctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(hctx, http.MethodGet, signedURL, nil)
	if err != nil {
		cancel()
		return nil, &DownloadError{Op: op, Err: errors.New("cannot build request")}
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	timer := time.AfterFunc(c.cfg.DownloadHeaderTimeout, cancel)
	res, err := c.cfg.HTTPClient.Do(req)
	stopped := timer.Stop()
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("d1: %s: %w", op, ctx.Err())
		}
		if !stopped {
			return nil, &DownloadError{Op: op, Err: fmt.Errorf("no response within %s", c.cfg.DownloadHeaderTimeout)}
		}
		return nil, &DownloadError{Op: op, Err: stripURL(err)}
	}
	dl := &Download{Offset: offset, Size: res.ContentLength, Total: res.ContentLength}
	switch {
	case res.StatusCode == http.StatusOK:
		dl.RangeIgnored = offset > 0
	case res.StatusCode == http.StatusPartialContent && offset > 0:
		if err := checkContentRange(res, offset, dl); err != nil {
			drain(res.Body)
			cancel()
			return nil, &DownloadError{Op: op, Err: err}
		}
	case res.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		drain(res.Body)
		cancel()
		total := int64(-1)
		if _, after, ok := strings.Cut(res.Header.Get("Content-Range"), "*/"); ok {
			if n, err := strconv.ParseInt(after, 10, 64); err == nil && n >= 0 {
				total = n
			}
		}
		return nil, &RangeError{Offset: offset, Total: total}
	case res.StatusCode == http.StatusForbidden, res.StatusCode == http.StatusNotFound, res.StatusCode == http.StatusGone:
		drain(res.Body)
		cancel()
		return nil, &DownloadExpiredError{Op: op, StatusCode: res.StatusCode}
	default:
		drain(res.Body)
		cancel()
		return nil, &DownloadError{Op: op, Err: fmt.Errorf("HTTP %d", res.StatusCode)}
	}
	body := &checkedBody{rc: res.Body, cancel: cancel, want: res.ContentLength, op: op}
	if dl.RangeIgnored {
		if dl.Total >= 0 && dl.Total < offset {
			body.Close()
			return nil, &RangeError{Offset: offset, Total: dl.Total}
		}
		if n, err := io.CopyN(io.Discard, body, offset); err != nil {
			body.Close()
			if errors.Is(err, io.EOF) {
				return nil, &RangeError{Offset: offset, Total: n}
			}
			return nil, err
		}
		if dl.Size >= 0 {
			dl.Size -= offset
		}
	}
	dl.Body = body
	return dl, nil
}

// checkContentRange holds a 206 answer to the range asked for: it must
// start at offset and run to the end of the dump.
func checkContentRange(res *http.Response, offset int64, dl *Download) error {
	cr := res.Header.Get("Content-Range")
	var first, last int64
	var total string
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%s", &first, &last, &total); err != nil {
		return fmt.Errorf("partial content with a Content-Range %q that does not parse", cr)
	}
	dl.Total = -1
	if total != "*" {
		n, err := strconv.ParseInt(total, 10, 64)
		if err != nil || n <= last {
			return fmt.Errorf("partial content with a Content-Range %q that does not parse", cr)
		}
		dl.Total = n
	}
	switch {
	case first != offset || last < first:
		return fmt.Errorf("asked for the dump from byte %d, got bytes %d-%d", offset, first, last)
	case dl.Total >= 0 && last != dl.Total-1:
		return fmt.Errorf("asked for the rest of the dump from byte %d, got bytes %d-%d of %d", offset, first, last, dl.Total)
	case res.ContentLength >= 0 && res.ContentLength != last-first+1:
		return fmt.Errorf("Content-Range %q with Content-Length %d", cr, res.ContentLength)
	}
	dl.Size = last - first + 1
	if dl.Total < 0 {
		dl.Total = last + 1 // the rest was asked for, so this is the end
	}
	return nil
}

func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	_ = rc.Close()
}

// checkedBody verifies the byte count against Content-Length and turns
// transport errors into DownloadErrors without the URL.
type checkedBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
	want   int64
	got    int64
	op     string
}

func (b *checkedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.got += int64(n)
	switch {
	case err == nil:
		if b.want >= 0 && b.got > b.want {
			return n, &DownloadError{Op: b.op, Err: fmt.Errorf("received more than the announced %d bytes", b.want)}
		}
		return n, nil
	case errors.Is(err, io.EOF):
		if b.want >= 0 && b.got != b.want {
			return n, &DownloadError{Op: b.op, Err: fmt.Errorf("dump truncated: received %d of %d bytes", b.got, b.want)}
		}
		return n, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, &DownloadError{Op: b.op, Err: fmt.Errorf("dump truncated: received %d of %d bytes", b.got, b.want)}
	default:
		return n, &DownloadError{Op: b.op, Err: fmt.Errorf("after %d bytes: %w", b.got, stripURL(err))}
	}
}

func (b *checkedBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}
