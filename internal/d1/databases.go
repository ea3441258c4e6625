package d1

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"
)

// Database describes a D1 database.
type Database struct {
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Jurisdiction is where D1 keeps the database's data: "eu", "fedramp",
	// or "" when it is not restricted. Backups of a database with a
	// jurisdiction may be held to a bucket in the same one.
	Jurisdiction string `json:"jurisdiction,omitempty"`
	// FileSize and NumTables are only filled by Get.
	FileSize  int64 `json:"file_size,omitempty"`
	NumTables int   `json:"num_tables,omitempty"`
}

const listPageSize = 1000

// List returns every database in the account.
func (c *Client) List(ctx context.Context) ([]Database, error) {
	return c.list(ctx, "")
}

func (c *Client) list(ctx context.Context, name string) ([]Database, error) {
	const op = "list databases"
	var all []Database
	for page := 1; ; page++ {
		var params cfd1.DatabaseListParams
		params.AccountID.Value, params.AccountID.Present = c.cfg.AccountID, true
		params.Page.Value, params.Page.Present = float64(page), true
		params.PerPage.Value, params.PerPage.Present = listPageSize, true
		if name != "" {
			params.Name.Value, params.Name.Present = name, true
		}
		res, err := c.db.List(ctx, params)
		if err != nil {
			return nil, c.classify(ctx, op, "", err)
		}
		for _, d := range res.Result {
			all = append(all, Database{UUID: d.UUID, Name: d.Name, CreatedAt: d.CreatedAt, Jurisdiction: string(d.Jurisdiction)})
		}
		if len(res.Result) < listPageSize {
			return all, nil
		}
	}
}

// Get returns one database by UUID.
func (c *Client) Get(ctx context.Context, databaseID string) (Database, error) {
	var params cfd1.DatabaseGetParams
	params.AccountID.Value, params.AccountID.Present = c.cfg.AccountID, true
	res, err := c.db.Get(ctx, databaseID, params)
	if err != nil {
		return Database{}, c.classify(ctx, "get database", databaseID, err)
	}
	return Database{
		UUID: res.UUID, Name: res.Name, CreatedAt: res.CreatedAt, Jurisdiction: string(res.Jurisdiction),
		FileSize: int64(res.FileSize), NumTables: int(res.NumTables),
	}, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsUUID reports whether s has the shape of a database UUID.
func IsUUID(s string) bool { return uuidRE.MatchString(s) }

// Resolve finds a database by UUID or by exact name.
func (c *Client) Resolve(ctx context.Context, uuidOrName string) (Database, error) {
	if uuidOrName == "" {
		return Database{}, fmt.Errorf("d1: resolve database: no database given")
	}
	if IsUUID(uuidOrName) {
		return c.Get(ctx, strings.ToLower(uuidOrName))
	}
	dbs, err := c.list(ctx, uuidOrName)
	if err != nil {
		return Database{}, err
	}
	var found []Database
	for _, d := range dbs {
		if d.Name == uuidOrName {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return Database{}, &NotFoundError{Op: "resolve database", Database: uuidOrName, Message: "no database with that name in the account"}
	case 1:
		return found[0], nil
	default:
		return Database{}, &NotFoundError{Op: "resolve database", Database: uuidOrName, Message: fmt.Sprintf("%d databases share that name; give the UUID", len(found))}
	}
}
