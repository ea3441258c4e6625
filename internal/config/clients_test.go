package config_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/d1backup/d1backup/internal/config"
)

// The upload client speaks HTTP/1.1 even to a server that offers HTTP/2,
// so that every part in flight has its own connection (see HTTPClient).
func TestHTTPClientSpeaksHTTP1(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Proto))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := config.Defaults().HTTPClient()
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Proto != "HTTP/2.0" {
		t.Fatalf("the test server answered an HTTP/2 client with %s: the test proves nothing", res.Proto)
	}
	res, err = c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Proto != "HTTP/1.1" || res.TLS == nil || res.TLS.NegotiatedProtocol == "h2" {
		t.Errorf("proto %s (ALPN %q), want HTTP/1.1", res.Proto, res.TLS.NegotiatedProtocol)
	}
	if tr.MaxIdleConnsPerHost < config.Defaults().PartConcurrency {
		t.Errorf("MaxIdleConnsPerHost %d, fewer than the parts in flight", tr.MaxIdleConnsPerHost)
	}
}
