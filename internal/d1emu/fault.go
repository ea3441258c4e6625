package d1emu

import (
	"fmt"
	"slices"
)

// Endpoints, as used by Fault.Endpoint, Request.Endpoint and Route.Endpoint.
const (
	EndpointList     = "list"
	EndpointGet      = "get"
	EndpointCreate   = "create"   // POST .../d1/database
	EndpointExport   = "export"   // export start: no current_bookmark
	EndpointPoll     = "poll"     // export poll: current_bookmark set
	EndpointDownload = "download" // signed dump URL GET
	EndpointImport   = "import"   // every import action: init, ingest, poll
	EndpointUpload   = "upload"   // signed upload URL PUT
	EndpointQuery    = "query"
	EndpointRaw      = "raw"
	EndpointBookmark = "bookmark" // time_travel/bookmark
	EndpointAny      = "any"      // Fault only: every endpoint where the kind applies
)

// Fault kinds; FaultKinds says where each applies and what it does.
const (
	FaultRateLimit    = "rate_limit"
	FaultServerError  = "server_error"
	FaultReset        = "reset"
	FaultBadToken     = "bad_token"
	FaultBusy         = "busy"
	FaultExportError  = "export_error"
	FaultNotExporting = "not_exporting"
	FaultTruncate     = "truncate"
	FaultExpired      = "expired"
	FaultIgnoreRange  = "ignore_range"
	FaultDropAfter    = "drop_after"
	FaultImportError  = "import_error"
	FaultWrite        = "write"
)

// Messages the emulator answers with.
const (
	MessageBusy          = "Currently processing a long-running export. Please wait and try again."
	MessageNotExporting  = "Not currently exporting anything."
	MessageRateLimited   = "Please wait and consider throttling your request speed"
	MessageAuth          = "Authentication error"
	MessageInternalError = "internal error"
)

// Fault is an injected failure, matched against incoming requests in
// injection order. A request hit by a fault consumes one of its Times; a
// matching request let through by After does not.
type Fault struct {
	Endpoint   string `json:"endpoint"`              // one of the Endpoint constants
	Kind       string `json:"kind"`                  // one of the Fault constants
	Times      int    `json:"times,omitempty"`       // matching requests it hits; 0 means 1
	After      int    `json:"after,omitempty"`       // matching requests let through before the first hit
	RetryAfter int    `json:"retry_after,omitempty"` // seconds, for rate_limit (sent as is, 0 included)
	Database   string `json:"database,omitempty"`    // only this database UUID
	SQL        string `json:"sql,omitempty"`         // for write: the statements to run
	Bytes      int64  `json:"bytes,omitempty"`       // for drop_after: body bytes sent before the drop
}

// FaultKind says where a fault kind applies and what it does.
type FaultKind struct {
	Kind      string
	Endpoints []string
	Effect    string
}

var (
	apiEndpoints    = []string{EndpointList, EndpointGet, EndpointCreate, EndpointExport, EndpointPoll, EndpointImport, EndpointQuery, EndpointRaw, EndpointBookmark}
	signedEndpoints = []string{EndpointDownload, EndpointUpload}
	everyEndpoint   = slices.Concat(apiEndpoints, signedEndpoints)
	exportEndpoints = []string{EndpointExport, EndpointPoll}
)

// faultKinds is the one table of fault kinds: which endpoints each applies
// to (validation, matching and the help text all read it).
var faultKinds = []FaultKind{
	{FaultRateLimit, everyEndpoint, "HTTP 429 with Retry-After: retry_after and code 971 (S3 SlowDown XML on signed URLs)"},
	{FaultServerError, everyEndpoint, "HTTP 500 with code 7500 (S3 InternalError XML on signed URLs)"},
	{FaultReset, everyEndpoint, "drop the connection without a response (Go's transport silently retries idempotent requests on reused connections: use times > 1)"},
	{FaultBadToken, apiEndpoints, "HTTP 401 with code 10000"},
	{FaultBusy, exportEndpoints, `result.success false, "Currently processing a long-running export"`},
	{FaultExportError, exportEndpoints, "the export ends in status error: at a start when it would complete, at a poll right away"},
	{FaultNotExporting, exportEndpoints, `"Not currently exporting anything." and the running export is cancelled`},
	{FaultTruncate, []string{EndpointDownload}, "full Content-Length, half the body, then the connection drops"},
	{FaultExpired, []string{EndpointDownload}, `HTTP 403 AccessDenied "Request has expired"`},
	{FaultIgnoreRange, []string{EndpointDownload}, "Range is ignored: HTTP 200 with the whole body"},
	{FaultDropAfter, []string{EndpointDownload}, "the response (full or ranged) stops after bytes body bytes and the connection drops"},
	{FaultImportError, []string{EndpointImport}, "the next import that runs ends in status error; nothing is written"},
	{FaultWrite, []string{EndpointQuery, EndpointRaw, EndpointBookmark}, "run sql in the database (advancing its bookmark) before the request is served"},
}

// FaultKinds lists every fault kind.
func FaultKinds() []FaultKind {
	out := make([]FaultKind, len(faultKinds))
	for i, k := range faultKinds {
		k.Endpoints = slices.Clone(k.Endpoints)
		out[i] = k
	}
	return out
}

func kindEndpoints(kind string) ([]string, bool) {
	for _, k := range faultKinds {
		if k.Kind == kind {
			return k.Endpoints, true
		}
	}
	return nil, false
}

func (f Fault) validate() error {
	eps, ok := kindEndpoints(f.Kind)
	if !ok {
		return fmt.Errorf("d1emu: unknown fault kind %q", f.Kind)
	}
	if f.Endpoint != EndpointAny && !slices.Contains(eps, f.Endpoint) {
		return fmt.Errorf("d1emu: fault %q does not apply to endpoint %q (it applies to %v)", f.Kind, f.Endpoint, eps)
	}
	if f.Times < 0 || f.After < 0 || f.RetryAfter < 0 || f.Bytes < 0 {
		return fmt.Errorf("d1emu: fault %q: negative times, after, retry_after or bytes", f.Kind)
	}
	if (f.Kind == FaultWrite) != (f.SQL != "") {
		return fmt.Errorf("d1emu: fault %q: sql is required for %q faults and only for them", f.Kind, FaultWrite)
	}
	return nil
}

// InjectFault arms a fault. It panics on an unknown kind or an endpoint the
// kind cannot apply to (a test bug); the control endpoint answers 400.
func (s *Server) InjectFault(f Fault) {
	if err := s.injectFault(f); err != nil {
		panic(err)
	}
}

func (s *Server) injectFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	if f.Times == 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
	return nil
}

// ClearFaults disarms every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault consumes the first fault that hits a request, if any.
func (s *Server) takeFault(endpoint, dbID string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Endpoint != EndpointAny && f.Endpoint != endpoint {
			continue
		}
		if eps, _ := kindEndpoints(f.Kind); !slices.Contains(eps, endpoint) {
			continue
		}
		if f.Database != "" && f.Database != dbID {
			continue
		}
		if f.After > 0 {
			f.After--
			continue
		}
		f.Times--
		if f.Times <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		hit := *f
		return &hit
	}
	return nil
}
