package d1emu

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// The database endpoints: list, get, create.

type listItem struct {
	UUID         string  `json:"uuid"`
	Name         string  `json:"name"`
	CreatedAt    string  `json:"created_at"`
	Version      string  `json:"version"`
	Jurisdiction *string `json:"jurisdiction"`
}

// jurisdiction is the wire form: null when there is none.
func (d Database) jurisdiction() *string {
	if d.Jurisdiction == "" {
		return nil
	}
	j := d.Jurisdiction
	return &j
}

func queryInt(r *http.Request, key string, def int) int {
	v := r.URL.Query().Get(key)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return def
	}
	return int(f)
}

func (s *Server) handleList(c *call) {
	page := max(queryInt(c.r, "page", 1), 1)
	perPage := min(max(queryInt(c.r, "per_page", 1000), 10), 10000)
	name := c.r.URL.Query().Get("name")
	var all []listItem
	for _, d := range s.Databases() {
		if name != "" && !strings.Contains(d.Name, name) {
			continue
		}
		all = append(all, listItem{UUID: d.UUID, Name: d.Name, CreatedAt: apiTime(d.CreatedAt), Version: "production", Jurisdiction: d.jurisdiction()})
	}
	items := []listItem{}
	if start := (page - 1) * perPage; start < len(all) {
		items = all[start:min(start+perPage, len(all))]
	}
	s.writeResult(c, http.StatusOK, items, &resultInfo{Page: page, PerPage: perPage, Count: len(items), TotalCount: len(all)})
}

type dbDetails struct {
	UUID            string            `json:"uuid"`
	Name            string            `json:"name"`
	CreatedAt       string            `json:"created_at"`
	Version         string            `json:"version"`
	NumTables       int               `json:"num_tables"`
	FileSize        int64             `json:"file_size"`
	Jurisdiction    *string           `json:"jurisdiction"`
	ReadReplication map[string]string `json:"read_replication"`
}

func details(d Database) dbDetails {
	return dbDetails{
		UUID: d.UUID, Name: d.Name, CreatedAt: apiTime(d.CreatedAt), Version: "production",
		Jurisdiction: d.jurisdiction(), ReadReplication: map[string]string{"mode": "disabled"},
	}
}

func (s *Server) handleGet(c *call) {
	d := s.lookup(c.dbID, false)
	if d == nil {
		s.notFound(c)
		return
	}
	out := details(d.Database)
	if d.path == "" {
		out.NumTables, out.FileSize = 1, d.synthSize
	} else {
		d.mu.Lock()
		err := errors.New("server closed")
		if d.db != nil {
			err = d.db.QueryRow(`SELECT
			(SELECT count(*) FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_cf\_%' ESCAPE '\'),
			(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())`).Scan(&out.NumTables, &out.FileSize)
		}
		d.mu.Unlock()
		if err != nil {
			s.log.Error("get database", "uuid", d.UUID, "err", err)
			s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
			return
		}
	}
	s.writeResult(c, http.StatusOK, out, nil)
}

func (s *Server) handleCreate(c *call) {
	var req struct {
		Name                string `json:"name"`
		Jurisdiction        string `json:"jurisdiction"`
		PrimaryLocationHint string `json:"primary_location_hint"`
	}
	if err := json.Unmarshal(c.body, &req); err != nil || req.Name == "" {
		s.writeError(c, http.StatusBadRequest, 7400, "Invalid request body: name is required")
		return
	}
	if err := validPlacement(req.Jurisdiction, req.PrimaryLocationHint); err != nil {
		s.writeError(c, http.StatusBadRequest, 7400, "Invalid request body: "+err.Error())
		return
	}
	if s.lookup(req.Name, true) != nil {
		s.writeError(c, http.StatusBadRequest, 7502, "A database with that name already exists")
		return
	}
	db, err := s.CreateDatabase(req.Name, "", WithJurisdiction(req.Jurisdiction), WithLocationHint(req.PrimaryLocationHint))
	if err != nil {
		s.log.Error("create database", "name", req.Name, "err", err)
		s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
		return
	}
	s.writeResult(c, http.StatusOK, details(db), nil)
}
