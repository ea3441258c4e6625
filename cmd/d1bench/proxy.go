package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runProxy serves HTTPS and forwards dump downloads (/__emu/...) to the D1
// emulator and everything else to the S3 server, holding S3 requests to
// R2's rules as it goes: every part's length known, no aws-chunked bodies
// or checksum trailers, every part but the last of a completed upload the
// same size, at most 10,000 parts. scripts/bench puts every method behind
// it, so all of them pay the same TLS and proxy costs, as against R2 and
// D1's signed URLs on the internet.
//
//	d1bench proxy --cert cert.pem --key key.pem --s3 https://127.0.0.1:7070 --d1 http://127.0.0.1:8787
//
// It prints "# ready https://ADDR" once it listens.
func runProxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("d1bench proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	cert := fs.String("cert", "", "TLS certificate (PEM)")
	key := fs.String("key", "", "TLS key (PEM)")
	s3 := fs.String("s3", "", "S3 server URL")
	d1 := fs.String("d1", "", "D1 emulator URL (signed dump URLs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cert == "" || *key == "" || *s3 == "" || *d1 == "" {
		return errors.New("proxy: --cert, --key, --s3 and --d1 are required")
	}
	p, err := newProxy(*s3, *d1)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("# ready https://%s\n", ln.Addr())
	if err := srv.ServeTLS(ln, *cert, *key); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type proxy struct {
	s3, d1 *httputil.ReverseProxy

	mu    sync.Mutex
	parts map[string]map[int]int64 // upload ID → part number → bytes
}

// copyBuffer matches the store step's read size; the default 32 KiB made
// the proxy the slowest hop.
type bufferPool struct{ sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.Pool.Get().(*[]byte) }
func (b *bufferPool) Put(p []byte) { b.Pool.Put(&p) }

func newProxy(s3, d1 string) (*proxy, error) {
	pool := &bufferPool{sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}}
	forward := func(target string) (*httputil.ReverseProxy, error) {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("proxy: bad upstream URL %q", target)
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		return &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.Out.Host = pr.In.Host // S3 signatures cover the Host header
			},
			Transport:  t,
			BufferPool: pool,
		}, nil
	}
	p := &proxy{parts: map[string]map[int]int64{}}
	var err error
	if p.s3, err = forward(s3); err != nil {
		return nil, err
	}
	if p.d1, err = forward(d1); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/__emu/") {
		p.d1.ServeHTTP(w, r)
		return
	}
	if msg := p.check(r); msg != "" {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidRequest</Code><Message>%s</Message></Error>", msg)
		return
	}
	p.s3.ServeHTTP(w, r)
}

var partNumberRe = regexp.MustCompile(`<PartNumber>\s*(\d+)\s*</PartNumber>`)

// check returns why R2 would refuse r, or "".
func (p *proxy) check(r *http.Request) string {
	for k, v := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-checksum-") || lk == "x-amz-trailer" ||
			(lk == "content-encoding" && strings.Contains(strings.Join(v, ","), "aws-chunked")) {
			return "R2 rejects checksum trailers and aws-chunked bodies (" + k + ")"
		}
	}
	q := r.URL.Query()
	id := q.Get("uploadId")
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber") && id != "":
		n, err := strconv.Atoi(q.Get("partNumber"))
		if err != nil || n < 1 || n > 10000 {
			return "part numbers are 1..10000"
		}
		if r.ContentLength < 0 {
			return "a part needs a Content-Length"
		}
		p.mu.Lock()
		if p.parts[id] == nil {
			p.parts[id] = map[int]int64{}
		}
		p.parts[id][n] = r.ContentLength
		p.mu.Unlock()
	case r.Method == http.MethodPost && id != "":
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		r.Body.Close()
		if err != nil {
			return "cannot read the part list"
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		return p.checkComplete(id, partNumberRe.FindAllSubmatch(body, -1))
	case r.Method == http.MethodDelete && id != "":
		p.mu.Lock()
		delete(p.parts, id)
		p.mu.Unlock()
	}
	return ""
}

func (p *proxy) checkComplete(id string, listed [][][]byte) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	sizes := p.parts[id]
	if len(listed) > 10000 {
		return "more than 10000 parts"
	}
	var first int64
	for i, m := range listed {
		n, _ := strconv.Atoi(string(m[1]))
		size, ok := sizes[n]
		switch {
		case !ok:
			return fmt.Sprintf("part %d was not uploaded through this proxy", n)
		case i == 0:
			first = size
		case i < len(listed)-1 && size != first, i == len(listed)-1 && size > first:
			return "All non-trailing parts must have the same length."
		}
	}
	delete(p.parts, id)
	return ""
}

// proxyMain runs "d1bench proxy" until SIGINT or SIGTERM.
func proxyMain(ctx context.Context, args []string) {
	if err := runProxy(ctx, args); err != nil {
		fmt.Fprintln(os.Stderr, "d1bench proxy:", err)
		os.Exit(1)
	}
}
