package d1_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
)

// bigSeed makes a dump of a few hundred KiB, so offsets fall mid-stream.
const bigSeed = `
CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40)
INSERT INTO blobs SELECT i, randomblob(4096) FROM n;
`

// signedURL starts an export of a database seeded with bigSeed and returns
// its URL and the dump it serves.
func signedURL(t *testing.T, f *fixture, c *d1.Client) (string, []byte) {
	t.Helper()
	db := f.emu.MustCreate(t, "big", bigSeed)
	ctx := context.Background()
	st, err := c.StartExport(ctx, db.UUID)
	for err == nil && st.Status == "active" {
		st, err = c.PollExport(ctx, db.UUID, st.Bookmark)
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.SignedURL, f.emu.MustDump(t, db.UUID)
}

func readAll(t *testing.T, dl *d1.Download) []byte {
	t.Helper()
	defer dl.Body.Close()
	b, err := io.ReadAll(dl.Body)
	if err != nil {
		t.Fatalf("read the download: %v", err)
	}
	return b
}

// stripRange forwards to target without the request's Range header, as a
// server (or a proxy) that ignores ranges would answer.
func stripRange(t *testing.T, target string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Range")
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestDownloadFrom: a download from an offset yields exactly the rest of
// the dump, whether the server honours Range or sends it whole.
func TestDownloadFrom(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	c := f.client(t, nil)
	u, dump := signedURL(t, f, c)
	size := int64(len(dump))
	ignoring := stripRange(t, u)
	viaProxy := ignoring.URL + u[strings.Index(u, "/__emu/"):]
	for _, tc := range []struct {
		name         string
		url          string
		offset       int64
		rangeIgnored bool
	}{
		{"whole", u, 0, false},
		{"from 1", u, 1, false},
		{"from the middle", u, size / 2, false},
		{"last byte", u, size - 1, false},
		{"range ignored/from the middle", viaProxy, size/2 + 3, true},
		{"range ignored/last byte", viaProxy, size - 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dl, err := c.Download(context.Background(), tc.url, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, dl)
			if !bytes.Equal(got, dump[tc.offset:]) {
				t.Fatalf("got %d bytes, want the dump's last %d from offset %d", len(got), size-tc.offset, tc.offset)
			}
			checks := []struct {
				name      string
				got, want any
			}{
				{"Offset", dl.Offset, tc.offset},
				{"Size", dl.Size, size - tc.offset},
				{"Total", dl.Total, size},
				{"RangeIgnored", dl.RangeIgnored, tc.rangeIgnored},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
				}
			}
		})
	}
	// Past the end: the dump is not the one a checkpoint describes.
	for _, tc := range []struct {
		name string
		url  string
	}{{"honoured", u}, {"ignored", viaProxy}} {
		_, err := c.Download(context.Background(), tc.url, size+10)
		var re *d1.RangeError
		if !errors.As(err, &re) || re.Total != size || re.Offset != size+10 {
			t.Errorf("range %s, offset past the end: err = %v, want a RangeError with total %d", tc.name, err, size)
		}
	}
}

// TestDownloadHostileRanges: a server answering a range with other bytes
// than asked for is refused before a byte is used, without the URL.
func TestDownloadHostileRanges(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name         string
		contentRange string
		length       int
		want         string
	}{
		{"starts elsewhere", "bytes 0-99/200", 100, "got bytes 0-99"},
		{"stops early", "bytes 50-99/200", 50, "got bytes 50-99 of 200"},
		{"garbage", "bytes=50-", 100, "does not parse"},
		{"total before the end", "bytes 50-149/120", 100, "does not parse"},
		{"length disagrees", "bytes 50-199/200", 100, "Content-Length 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", tc.contentRange)
				w.Header().Set("Content-Length", fmt.Sprint(tc.length))
				w.WriteHeader(http.StatusPartialContent)
				io.WriteString(w, body[:tc.length])
			}))
			defer srv.Close()
			c, err := d1.New(d1.NewConfig(strings.Repeat("a", 32), "token-0123456789", srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			secretURL := srv.URL + "/dump.sql?X-Amz-Signature=secret"
			_, err = c.Download(context.Background(), secretURL, 50)
			var de *d1.DownloadError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a DownloadError saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows the signed URL: %v", err)
			}
		})
	}
}
