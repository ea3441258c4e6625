package d1emu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// dumpFile is a generated dump behind a signed URL.
type dumpFile struct {
	id      string
	db      *database
	path    string // "" for synthetic
	size    int64
	etag    string
	expires time.Time // zero until the export completes
}

// writeTo writes n bytes of the dump from offset off to w.
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
	if !s.admitSigned(c) {
		return
	}
	if f == nil {
		s.writeXMLError(c, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	rangeHeader := r.Header.Get("Range")
	if c.fault != nil && c.fault.Kind == FaultIgnoreRange {
		rangeHeader = ""
	}
	off, n, partial, ok := parseRange(rangeHeader, f.size)
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
	if cut, drop := dropAt(c.fault, n); drop {
		if err := f.writeTo(r.Context(), c.w, off, cut); err == nil {
			c.w.Flush()
		}
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	if err := f.writeTo(r.Context(), c.w, off, n); err != nil {
		s.log.Warn("download", "path", r.URL.Path, "err", err)
	}
}

// dropAt is how many of n body bytes a download sends before a fault
// drops its connection, if one does.
func dropAt(f *Fault, n int64) (int64, bool) {
	switch {
	case f == nil:
		return n, false
	case f.Kind == FaultTruncate:
		return n / 2, true
	case f.Kind == FaultDropAfter:
		return min(f.Bytes, n), true
	}
	return n, false
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
