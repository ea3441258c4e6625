package d1emu

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// Control endpoint handlers; the routes are in controlRoutes.

func (s *Server) ctlAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		http.Error(w, "bad fault: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.injectFault(f); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ctlClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ctlRequests(w http.ResponseWriter, _ *http.Request) {
	type view struct {
		Request
		Body string `json:"body,omitempty"`
	}
	reqs := s.Requests()
	out := make([]view, len(reqs))
	for i, q := range reqs {
		out[i] = view{Request: q, Body: string(q.Body)}
	}
	writeControlJSON(w, out)
}

func (s *Server) ctlResetRequests(w http.ResponseWriter, _ *http.Request) {
	s.ResetRequests()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ctlDatabases(w http.ResponseWriter, _ *http.Request) {
	writeControlJSON(w, s.Databases())
}

func (s *Server) ctlDump(w http.ResponseWriter, r *http.Request) {
	d := s.lookup(r.PathValue("id"), true)
	if d == nil {
		http.Error(w, "no such database", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if d.path == "" {
		w.Header().Set("Content-Length", strconv.FormatInt(d.synthSize, 10))
	}
	if _, err := s.WriteDump(r.Context(), d.UUID, w); err != nil {
		s.log.Warn("control dump", "uuid", d.UUID, "err", err)
		http.Error(w, err.Error(), http.StatusConflict) // no effect once the body started
	}
}

func (s *Server) ctlExec(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.Exec(r.PathValue("id"), string(b)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ctlImports(w http.ResponseWriter, _ *http.Request) {
	writeControlJSON(w, s.Imports())
}

func writeControlJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck
}
