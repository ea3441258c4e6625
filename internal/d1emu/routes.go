package d1emu

import (
	"net/http"
)

// Route is one HTTP route the emulator serves.
type Route struct {
	Method   string
	Path     string
	Endpoint string // as in Request.Endpoint and Fault.Endpoint; "" for control routes
	Doc      string
}

const apiPrefix = "/client/v4/accounts/{account_id}/d1/database"

// route is a Route and its handler: API routes (handle) go through auth,
// rate limiting and faults; the others (serve) get the raw request.
type route struct {
	Route
	handle func(*Server, *call)
	serve  func(*Server, http.ResponseWriter, *http.Request)
}

// apiRoutes is the one table of D1 API and signed-URL routes: the mux and
// the help text both read it.
var apiRoutes = []route{
	{Route: Route{"GET", apiPrefix, EndpointList, "list databases (?page=&per_page=&name=); items carry jurisdiction"}, handle: (*Server).handleList},
	{Route: Route{"POST", apiPrefix, EndpointCreate, `create a database {"name", "jurisdiction"?, "primary_location_hint"?}`}, handle: (*Server).handleCreate},
	{Route: Route{"GET", apiPrefix + "/{database_id}", EndpointGet, "get a database: num_tables, file_size, jurisdiction"}, handle: (*Server).handleGet},
	{Route: Route{"POST", apiPrefix + "/{database_id}/export", EndpointExport, `start an export {"output_format":"polling"}; with "current_bookmark" it is a poll (endpoint "poll")`}, handle: (*Server).handleExport},
	{Route: Route{"GET", "/__emu/dumps/{id}", EndpointDownload, "signed dump URL from a complete export (no auth; single byte ranges)"}, serve: (*Server).handleDownload},
	{Route: Route{"POST", apiPrefix + "/{database_id}/import", EndpointImport, `import: {"action":"init","etag"}, {"action":"ingest","etag","filename"}, {"action":"poll","current_bookmark"}`}, handle: (*Server).handleImport},
	{Route: Route{"PUT", "/__emu/uploads/{id}", EndpointUpload, "signed upload URL from an import init (no auth); answers ETag = MD5"}, serve: (*Server).handleUpload},
	{Route: Route{"POST", apiPrefix + "/{database_id}/query", EndpointQuery, `run SQL {"sql","params"?} or {"batch":[...]}: rows as objects`}, handle: (*Server).handleQuery},
	{Route: Route{"POST", apiPrefix + "/{database_id}/raw", EndpointRaw, `run SQL like query: rows as arrays under {columns, rows}`}, handle: (*Server).handleRaw},
	{Route: Route{"GET", apiPrefix + "/{database_id}/time_travel/bookmark", EndpointBookmark, "Time Travel bookmark now, or at ?timestamp=RFC3339"}, handle: (*Server).handleBookmark},
}

// controlRoutes drive a standalone emulator from scripts. They are not
// recorded in Requests, need no auth and are never rate limited or faulted.
var controlRoutes = []route{
	{Route: Route{"POST", "/__emu/faults", "", "arm a fault: JSON Fault → 204 (400 if invalid)"}, serve: (*Server).ctlAddFault},
	{Route: Route{"DELETE", "/__emu/faults", "", "disarm every fault → 204"}, serve: (*Server).ctlClearFaults},
	{Route: Route{"GET", "/__emu/requests", "", "the request log: JSON []Request (bodies as strings)"}, serve: (*Server).ctlRequests},
	{Route: Route{"DELETE", "/__emu/requests", "", "forget the request log → 204"}, serve: (*Server).ctlResetRequests},
	{Route: Route{"GET", "/__emu/databases", "", "JSON []Database"}, serve: (*Server).ctlDatabases},
	{Route: Route{"GET", "/__emu/databases/{id}/dump", "", "the dump the next export would produce"}, serve: (*Server).ctlDump},
	{Route: Route{"POST", "/__emu/databases/{id}/exec", "", "run the SQL in the body, advancing the bookmark → 204"}, serve: (*Server).ctlExec},
	{Route: Route{"GET", "/__emu/imports", "", "JSON []Import: every import run, with its largest statement"}, serve: (*Server).ctlImports},
}

// Routes lists the D1 API routes and the signed-URL routes.
func Routes() []Route { return publicRoutes(apiRoutes) }

// ControlRoutes lists the control routes under /__emu/.
func ControlRoutes() []Route { return publicRoutes(controlRoutes) }

func publicRoutes(rs []route) []Route {
	out := make([]Route, len(rs))
	for i, r := range rs {
		out[i] = r.Route
	}
	return out
}

func (s *Server) routes() {
	m := http.NewServeMux()
	for _, r := range apiRoutes {
		pattern := r.Method + " " + r.Path
		if r.handle != nil {
			m.HandleFunc(pattern, s.api(r.Endpoint, r.handle))
		} else {
			serve := r.serve
			m.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) { serve(s, w, req) })
		}
	}
	for _, r := range controlRoutes {
		serve := r.serve
		m.HandleFunc(r.Method+" "+r.Path, func(w http.ResponseWriter, req *http.Request) { serve(s, w, req) })
	}
	m.HandleFunc("/client/v4/", s.handleNoRoute)
	s.mux = m
}
