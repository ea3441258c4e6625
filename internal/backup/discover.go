package backup

import (
	"context"
	"path"
	"sort"
	"strings"

	"github.com/d1backup/d1backup/internal/d1"
)

// Lister is what discovery needs of the D1 API.
type Lister interface {
	List(ctx context.Context) ([]d1.Database, error)
}

// Selection says which databases a scheduled run backs up.
type Selection struct {
	// Databases are names or UUIDs; empty or "*" means every database.
	Databases []string
	// Include and Exclude are glob patterns (path.Match) over names; a
	// database is kept if it matches some Include (or Include is empty) and
	// no Exclude.
	Include []string
	Exclude []string
	// IgnoreMissing leaves out a listed database that is not in the
	// account instead of failing: a run's later pages list the account
	// again, and a database deleted since the run began is no error there.
	IgnoreMissing bool
}

// Discover lists the databases to back up. A configured name or UUID that
// does not exist is an error, not a silent skip: a typo must not leave a
// database unprotected.
func Discover(ctx context.Context, api Lister, sel Selection) ([]Target, error) {
	all, err := api.List(ctx)
	if err != nil {
		return nil, err
	}
	everything := len(sel.Databases) == 0 || (len(sel.Databases) == 1 && sel.Databases[0] == "*")
	var picked []d1.Database
	if everything {
		picked = all
	} else {
		byKey := map[string]d1.Database{}
		for _, d := range all {
			byKey[d.UUID] = d
			byKey[d.Name] = d
		}
		seen := map[string]bool{}
		var missing []string
		for _, ref := range sel.Databases {
			d, ok := byKey[strings.ToLower(ref)]
			if !ok {
				d, ok = byKey[ref]
			}
			if !ok {
				missing = append(missing, ref)
				continue
			}
			if !seen[d.UUID] {
				seen[d.UUID] = true
				picked = append(picked, d)
			}
		}
		if len(missing) > 0 && !sel.IgnoreMissing {
			return nil, &d1.NotFoundError{Op: "discover databases", Database: strings.Join(missing, ", "), Message: "configured but not in the account"}
		}
	}
	var out []Target
	for _, d := range picked {
		if keep(d.Name, sel) {
			out = append(out, Target{DatabaseID: d.UUID, DatabaseName: d.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DatabaseName < out[j].DatabaseName })
	return out, nil
}

func keep(name string, sel Selection) bool {
	in := len(sel.Include) == 0
	for _, p := range sel.Include {
		if ok, _ := path.Match(p, name); ok {
			in = true
			break
		}
	}
	for _, p := range sel.Exclude {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	return in
}
