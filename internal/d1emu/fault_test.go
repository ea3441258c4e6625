package d1emu_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/d1emu"
)

type faultState struct {
	db       d1emu.Database
	bookmark string // of an active export, for poll
	url      string // of a completed export, for download
}

// hit performs one request of the endpoint.
func (e *emu) hit(endpoint string, st *faultState) response {
	e.t.Helper()
	switch endpoint {
	case d1emu.EndpointList:
		return e.do("GET", e.srv.URL+"/client/v4/accounts/"+e.AccountID()+"/d1/database", e.Token(), nil)
	case d1emu.EndpointGet:
		return e.do("GET", e.dbURL(st.db.UUID), e.Token(), nil)
	case d1emu.EndpointExport:
		return e.do("POST", e.dbURL(st.db.UUID)+"/export", e.Token(), map[string]any{"output_format": "polling"})
	case d1emu.EndpointPoll:
		return e.do("POST", e.dbURL(st.db.UUID)+"/export", e.Token(), map[string]any{"output_format": "polling", "current_bookmark": st.bookmark})
	case d1emu.EndpointDownload:
		return e.download(st.url)
	}
	e.t.Fatalf("no endpoint %q", endpoint)
	return response{}
}

func exportOf(t *testing.T, r response) exportResult {
	t.Helper()
	var env envelope
	var res exportResult
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("HTTP %d %s: %v", r.status, r.body, err)
	}
	json.Unmarshal(env.Result, &res)
	return res
}

func wantEnvelopeError(status, code int, msg string) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		var env envelope
		json.Unmarshal(r.body, &env)
		if r.status != status || env.Success || len(env.Errors) != 1 || env.Errors[0].Code != code || env.Errors[0].Message != msg {
			t.Errorf("got HTTP %d %s (err %v); want HTTP %d code %d %q", r.status, r.body, r.err, status, code, msg)
		}
	}
}

func wantXMLError(status int, code string) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		if r.status != status || !strings.Contains(string(r.body), "<Error><Code>"+code+"</Code>") {
			t.Errorf("got HTTP %d %s (err %v); want HTTP %d <Code>%s</Code>", r.status, r.body, r.err, status, code)
		}
	}
}

func wantExport(success bool, status, errMsg string) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		res := exportOf(t, r)
		if r.status != http.StatusOK || res.Success != success || res.Status != status || res.Error != errMsg {
			t.Errorf("got HTTP %d %s; want success %v status %q error %q", r.status, r.body, success, status, errMsg)
		}
	}
}

func wantDropped(t *testing.T, r response) {
	t.Helper()
	if r.err == nil {
		t.Errorf("got HTTP %d, want a dropped connection", r.status)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name     string
		fault    d1emu.Fault
		endpoint string // request made
		check    func(*testing.T, response)
		logged   int // status in the request log
	}{
		{"rate limit list", d1emu.Fault{Endpoint: "list", Kind: d1emu.FaultRateLimit, RetryAfter: 7}, "list",
			func(t *testing.T, r response) {
				wantEnvelopeError(429, 971, d1emu.MessageRateLimited)(t, r)
				if got := r.header.Get("Retry-After"); got != "7" {
					t.Errorf("Retry-After = %q, want 7", got)
				}
			}, 429},
		{"rate limit download", d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultRateLimit, RetryAfter: 1}, "download", wantXMLError(429, "SlowDown"), 429},
		{"server error get", d1emu.Fault{Endpoint: "get", Kind: d1emu.FaultServerError}, "get", wantEnvelopeError(500, 7500, "internal error"), 500},
		{"server error export", d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultServerError}, "export", wantEnvelopeError(500, 7500, "internal error"), 500},
		{"server error download", d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultServerError}, "download", wantXMLError(500, "InternalError"), 500},
		{"reset export", d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultReset}, "export", wantDropped, 0},
		{"reset poll", d1emu.Fault{Endpoint: "poll", Kind: d1emu.FaultReset}, "poll", wantDropped, 0},
		{"reset download", d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultReset}, "download", wantDropped, 0},
		{"bad token poll", d1emu.Fault{Endpoint: "poll", Kind: d1emu.FaultBadToken}, "poll", wantEnvelopeError(401, 10000, "Authentication error"), 401},
		{"busy export", d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultBusy}, "export", wantExport(false, "", d1emu.MessageBusy), 200},
		{"not exporting poll", d1emu.Fault{Endpoint: "poll", Kind: d1emu.FaultNotExporting}, "poll", wantExport(false, "", d1emu.MessageNotExporting), 200},
		{"export error at poll", d1emu.Fault{Endpoint: "poll", Kind: d1emu.FaultExportError}, "poll",
			wantExport(true, "error", "cannot export databases with Virtual Tables (fts5)"), 200},
		{"expired download", d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultExpired}, "download",
			func(t *testing.T, r response) {
				wantXMLError(403, "AccessDenied")(t, r)
				if !strings.Contains(string(r.body), "<Message>Request has expired</Message>") {
					t.Errorf("body %s", r.body)
				}
			}, 403},
		{"truncated download", d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultTruncate}, "download",
			func(t *testing.T, r response) {
				if r.err == nil || r.status != 200 || r.header.Get("Content-Length") == "" {
					t.Errorf("got HTTP %d err %v, want 200 then a cut body", r.status, r.err)
				}
			}, 200},
		{"any hits the next request", d1emu.Fault{Endpoint: "any", Kind: d1emu.FaultServerError}, "get", wantEnvelopeError(500, 7500, "internal error"), 500},
		{"any skips endpoints the kind cannot apply to", d1emu.Fault{Endpoint: "any", Kind: d1emu.FaultTruncate}, "download",
			func(t *testing.T, r response) {
				if r.err == nil {
					t.Errorf("download not truncated")
				}
			}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmu(t, d1emu.Options{ExportPolls: 1})
			st := &faultState{db: e.mustCreate("app", smallSeed)}
			switch tt.endpoint {
			case "poll":
				_, res := e.export(st.db.UUID, "")
				st.bookmark = res.AtBookmark
			case "download":
				st.url = e.runExport(st.db.UUID).Result.SignedURL
			}
			if tt.endpoint == "download" && tt.fault.Endpoint == "any" {
				// Requests the kind cannot apply to go through untouched.
				e.InjectFault(tt.fault)
				if r := e.hit("list", st); r.status != 200 {
					t.Fatalf("list under a download-only fault: HTTP %d", r.status)
				}
			} else {
				e.InjectFault(tt.fault)
			}
			e.ResetRequests()
			tt.check(t, e.hit(tt.endpoint, st))
			reqs := e.Requests()
			if len(reqs) != 1 || reqs[0].Endpoint != tt.endpoint || reqs[0].Status != tt.logged {
				t.Errorf("request log %+v, want one %s request with status %d", reqs, tt.endpoint, tt.logged)
			}
			// Times 0 means once: the same request now goes through.
			after := e.hit(tt.endpoint, st)
			if after.err != nil || (after.status != 200 && after.status != 202) {
				t.Errorf("request after the fault: HTTP %d %s err %v", after.status, after.body, after.err)
			}
		})
	}
}

func TestFaultExportErrorAtStart(t *testing.T) {
	e := newEmu(t, d1emu.Options{ExportPolls: 1})
	db := e.mustCreate("app", smallSeed)
	e.InjectFault(d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultExportError})
	_, res := e.export(db.UUID, "")
	if res.Status != "active" {
		t.Fatalf("start = %+v, want active", res)
	}
	if _, res = e.export(db.UUID, res.AtBookmark); res.Status != "error" || res.Error == "" {
		t.Errorf("end = %+v, want status error", res)
	}
	if res := e.runExport(db.UUID); res.Status != "complete" {
		t.Errorf("next export = %+v, want complete", res)
	}
}

func TestFaultTimesAndDatabase(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	a := e.mustCreate("a", smallSeed)
	b := e.mustCreate("b", smallSeed)
	e.InjectFault(d1emu.Fault{Endpoint: "get", Kind: d1emu.FaultRateLimit, Times: 2, Database: b.UUID})
	tests := []struct {
		db   d1emu.Database
		want int
	}{{a, 200}, {b, 429}, {a, 200}, {b, 429}, {b, 200}}
	for i, tt := range tests {
		if r := e.do("GET", e.dbURL(tt.db.UUID), e.Token(), nil); r.status != tt.want {
			t.Errorf("request %d to %s: HTTP %d, want %d", i, tt.db.Name, r.status, tt.want)
		}
	}
	if r := e.do("GET", e.dbURL(a.UUID), e.Token(), nil); r.status != 200 {
		t.Errorf("after the faults: HTTP %d", r.status)
	}
}

func TestInjectFaultRejectsNonsense(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	for _, f := range []d1emu.Fault{{Endpoint: "list", Kind: "truncate"}, {Endpoint: "export", Kind: "nope"}, {Endpoint: "nowhere", Kind: "reset"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("InjectFault(%+v) did not panic", f)
				}
			}()
			e.InjectFault(f)
		}()
	}
	r, err := http.Post(e.srv.URL+"/__emu/faults", "application/json", strings.NewReader(`{"endpoint":"list","kind":"truncate"}`))
	if err != nil || r.StatusCode != 400 {
		t.Errorf("POST /__emu/faults with nonsense: %v %v", r.StatusCode, err)
	}
}

func TestDownloadTruncatedBytes(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("sample", d1emu.SampleSQL)
	url := e.runExport(db.UUID).Result.SignedURL
	e.InjectFault(d1emu.Fault{Endpoint: "download", Kind: d1emu.FaultTruncate})
	res, err := e.hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil || int64(len(got)) != res.ContentLength/2 {
		t.Errorf("read %d of %d bytes, err %v; want half, then an error", len(got), res.ContentLength, err)
	}
	if !bytes.HasPrefix([]byte(e.dump(db.UUID)), got) {
		t.Error("truncated body is not a prefix of the dump")
	}
}

func TestDownloadRange(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("sample", d1emu.SampleSQL)
	syn, _ := e.AddSyntheticDatabase("syn", 3<<20)
	for _, id := range []string{db.UUID, syn.UUID} {
		full := e.dump(id)
		url := e.runExport(id).Result.SignedURL
		tests := []struct {
			rng        string
			status     int
			start, end int // of full
		}{
			{"", 200, 0, len(full)},
			{"bytes=10-19", 206, 10, 20},
			{"bytes=100-", 206, 100, len(full)},
			{"bytes=-5", 206, len(full) - 5, len(full)},
		}
		for _, tt := range tests {
			req, _ := http.NewRequest("GET", url, nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			res, err := e.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status || string(got) != full[tt.start:tt.end] {
				t.Errorf("Range %q: HTTP %d, %d bytes; want %d, bytes %d-%d", tt.rng, res.StatusCode, len(got), tt.status, tt.start, tt.end)
			}
		}
	}
}

func TestFaultNotExportingStopsTheExport(t *testing.T) {
	e := newEmu(t, d1emu.Options{ExportPolls: 2})
	db := e.mustCreate("app", smallSeed)
	_, res := e.export(db.UUID, "")
	e.InjectFault(d1emu.Fault{Endpoint: "poll", Kind: d1emu.FaultNotExporting})
	if _, p := e.export2(db.UUID, res.AtBookmark); p.Error != d1emu.MessageNotExporting {
		t.Fatalf("poll = %+v", p)
	}
	if _, p := e.export2(db.UUID, res.AtBookmark); p.Error != d1emu.MessageNotExporting {
		t.Errorf("second poll = %+v, want still not exporting", p)
	}
	if res := e.runExport(db.UUID); res.Status != "complete" {
		t.Errorf("new export = %+v, want it to start and complete", res)
	}
}
