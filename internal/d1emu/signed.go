package d1emu

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Signed URLs: dump downloads and import uploads, S3-style.

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

// admitSigned applies injected faults and the signature check to a call
// to a signed URL; it reports false when it answered the call.
func (s *Server) admitSigned(c *call) bool {
	if c.fault = s.takeFault(c.endpoint, c.dbID); c.fault != nil && s.transportFault(c, true) {
		return false
	}
	return s.checkPresigned(c, c.r)
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

// uploadURL is a signed PUT URL for u, pointing back at the host the client called.
func (s *Server) uploadURL(r *http.Request, u *uploadFile) string {
	return s.presign(r, "/__emu/uploads/"+u.id, u.expires)
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st := &s.imp
	st.mu.Lock()
	u := st.uploads[id]
	st.mu.Unlock()
	dbID := ""
	if u != nil {
		dbID = u.dbUUID
	}
	c := s.newCall(w, r, EndpointUpload, dbID)
	defer s.finish(c)
	if !s.admitSigned(c) {
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
