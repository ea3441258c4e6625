package d1emu

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// Control endpoints, for scripts driving a standalone emulator. They are not
// recorded in Requests and need no auth.
//
//	POST   /__emu/faults                 JSON Fault → 204 (400 if invalid)
//	DELETE /__emu/faults                 disarm all faults → 204
//	GET    /__emu/requests               JSON []Request (body as a string)
//	DELETE /__emu/requests               forget requests → 204
//	GET    /__emu/databases              JSON []Database
//	GET    /__emu/databases/{id}/dump    the dump the next export would produce
//	POST   /__emu/databases/{id}/exec    run the SQL in the body → 204
func (s *Server) controlRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /__emu/faults", func(w http.ResponseWriter, r *http.Request) {
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
	})
	m.HandleFunc("DELETE /__emu/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /__emu/requests", func(w http.ResponseWriter, r *http.Request) {
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
	})
	m.HandleFunc("DELETE /__emu/requests", func(w http.ResponseWriter, r *http.Request) {
		s.ResetRequests()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /__emu/databases", func(w http.ResponseWriter, r *http.Request) {
		writeControlJSON(w, s.Databases())
	})
	m.HandleFunc("GET /__emu/databases/{id}/dump", func(w http.ResponseWriter, r *http.Request) {
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
	})
	m.HandleFunc("POST /__emu/databases/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
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
	})
}

func writeControlJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck
}
