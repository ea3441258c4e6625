package d1emu

import (
	"fmt"
	"slices"
)

// Endpoints, as used by Fault.Endpoint and Request.Endpoint.
const (
	EndpointExport   = "export"   // export start: no current_bookmark
	EndpointPoll     = "poll"     // export poll: current_bookmark set
	EndpointDownload = "download" // signed URL GET
	EndpointList     = "list"
	EndpointGet      = "get"
	EndpointAny      = "any" // Fault only: every endpoint where the kind applies
)

// Fault kinds.
const (
	// FaultRateLimit answers HTTP 429 with Retry-After and code 971.
	FaultRateLimit = "rate_limit"
	// FaultServerError answers HTTP 500 with code 7500.
	FaultServerError = "server_error"
	// FaultReset drops the connection without a response. Note that Go's
	// http.Transport silently retries an idempotent request (GET) that
	// fails this way on a reused keep-alive connection, which consumes
	// another hit of the fault: use Times > 1 to make a reset stick.
	FaultReset = "reset"
	// FaultBadToken answers HTTP 401 with code 10000 (API endpoints only).
	FaultBadToken = "bad_token"
	// FaultBusy answers an export request with "Currently processing a
	// long-running export" (export and poll only).
	FaultBusy = "busy"
	// FaultExportError makes the export end in status "error": at a start,
	// when it would have completed; at a poll, right away (export and poll only).
	FaultExportError = "export_error"
	// FaultNotExporting answers "Not currently exporting anything." and
	// cancels the database's running export, as if it had stopped (export
	// and poll only).
	FaultNotExporting = "not_exporting"
	// FaultTruncate sends the full Content-Length, half the bytes, then
	// drops the connection (download only).
	FaultTruncate = "truncate"
	// FaultExpired answers the download with 403 "Request has expired"
	// (download only).
	FaultExpired = "expired"
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
// injection order.
type Fault struct {
	Endpoint   string `json:"endpoint"`              // one of the Endpoint constants
	Kind       string `json:"kind"`                  // one of the Fault constants
	Times      int    `json:"times,omitempty"`       // matching requests it hits; 0 means 1
	RetryAfter int    `json:"retry_after,omitempty"` // seconds, for rate_limit (sent as is, 0 included)
	Database   string `json:"database,omitempty"`    // only this database UUID
}

var faultEndpoints = map[string][]string{
	FaultRateLimit:    {EndpointExport, EndpointPoll, EndpointDownload, EndpointList, EndpointGet},
	FaultServerError:  {EndpointExport, EndpointPoll, EndpointDownload, EndpointList, EndpointGet},
	FaultReset:        {EndpointExport, EndpointPoll, EndpointDownload, EndpointList, EndpointGet},
	FaultBadToken:     {EndpointExport, EndpointPoll, EndpointList, EndpointGet},
	FaultBusy:         {EndpointExport, EndpointPoll},
	FaultExportError:  {EndpointExport, EndpointPoll},
	FaultNotExporting: {EndpointExport, EndpointPoll},
	FaultTruncate:     {EndpointDownload},
	FaultExpired:      {EndpointDownload},
}

func (f Fault) validate() error {
	eps, ok := faultEndpoints[f.Kind]
	if !ok {
		return fmt.Errorf("d1emu: unknown fault kind %q", f.Kind)
	}
	if f.Endpoint != EndpointAny && !slices.Contains(eps, f.Endpoint) {
		return fmt.Errorf("d1emu: fault %q does not apply to endpoint %q", f.Kind, f.Endpoint)
	}
	if f.Times < 0 || f.RetryAfter < 0 {
		return fmt.Errorf("d1emu: fault %q: negative times or retry_after", f.Kind)
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

// takeFault consumes the first fault matching a request, if any.
func (s *Server) takeFault(endpoint, dbID string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Endpoint != EndpointAny && f.Endpoint != endpoint {
			continue
		}
		if !slices.Contains(faultEndpoints[f.Kind], endpoint) {
			continue
		}
		if f.Database != "" && f.Database != dbID {
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
