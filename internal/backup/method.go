package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/d1backup/d1backup/internal/d1"
)

// Methods of reading a database.
const (
	// MethodExport: D1's export. The database answers no queries while it
	// runs; D1 refuses databases holding a virtual table.
	MethodExport = "export"
	// MethodQuery: the query API, page by page (package querydump). Blocks
	// nobody; consistency is proven by the Time Travel bookmark.
	MethodQuery = "query"
	// MethodAuto: export, and the query API where D1 refuses to export.
	MethodAuto = "auto"
)

// Methods lists the methods, for settings and help.
func Methods() []string { return []string{MethodExport, MethodQuery, MethodAuto} }

// StatusQuery is the start and poll steps' status for a database to be read
// through the query API: asked for (MethodQuery), or an export D1 refused
// for its virtual tables (MethodAuto). The workflow's Choice sends it to the
// query step.
const StatusQuery = "query"

// toQuery reports whether an export that ended in status error with D1's
// message msg (or a start that failed with err) goes on through the query
// API: under MethodAuto, when D1 refused the database for its virtual tables.
func (r *Runner) toQuery(msg string, err error) bool {
	if r.cfg.Method != MethodAuto {
		return false
	}
	var ef *d1.ExportFailedError
	if errors.As(err, &ef) {
		msg = ef.Message
	}
	return d1.IsVirtualTableRefusal(msg)
}

// queryInstead turns a start or poll that failed with D1's refusal to export
// virtual tables into StatusQuery (under MethodAuto).
func (r *Runner) queryInstead(e *Export, err error) bool {
	if err == nil || !r.toQuery("", err) {
		return false
	}
	e.Status, e.Error = StatusQuery, err.Error()
	r.log.Warn("D1 cannot export this database; reading it through the query API", "database", e.DatabaseName, "cause", err)
	return true
}

// residencyMatters: Start must learn the database's jurisdiction (a
// bucket destination, crossing not allowed).
func (r *Runner) residencyMatters() bool {
	return r.cfg.DestJurisdiction != "" && !r.cfg.AllowCrossJurisdiction
}

// resolve looks the database of in up (by UUID when it has one) and holds
// it to the residency rule.
func (r *Runner) resolve(ctx context.Context, in Export) (d1.Database, error) {
	ref := in.DatabaseID
	if ref == "" {
		ref = in.DatabaseName
	}
	if ref == "" {
		return d1.Database{}, &ConfigError{Msg: "no database given: set database_id or database_name"}
	}
	db, err := r.d1.Resolve(ctx, ref)
	if err != nil {
		return d1.Database{}, err
	}
	return db, r.checkResidency(db)
}

// Jurisdictions of R2 buckets; a D1 database reports "" for none.
const (
	JurisdictionDefault = "default"
	JurisdictionEU      = "eu"
	JurisdictionFedRAMP = "fedramp"
)

// Jurisdictions lists the R2 jurisdictions, for settings and help.
func Jurisdictions() []string {
	return []string{JurisdictionDefault, JurisdictionEU, JurisdictionFedRAMP}
}

// ResidencyError: the database's data must stay in its jurisdiction, and
// the destination bucket is outside it.
type ResidencyError struct {
	Database         string
	Jurisdiction     string
	Dest             string
	DestJurisdiction string
}

func (e *ResidencyError) Error() string {
	return fmt.Sprintf("backup: database %s is in the %s jurisdiction, but %s is a bucket in %s: back it up into a bucket of the %s jurisdiction (R2_JURISDICTION=%s), or allow it with D1BACKUP_ALLOW_CROSS_JURISDICTION=true",
		e.Database, e.Jurisdiction, e.Dest, e.DestJurisdiction, e.Jurisdiction, e.Jurisdiction)
}

// checkResidency refuses a database with a jurisdiction when the
// destination is a bucket outside it, unless that is allowed. A folder
// destination (DestJurisdiction "") is where the person running the CLI
// chose to put it.
func (r *Runner) checkResidency(db d1.Database) error {
	dest := r.cfg.DestJurisdiction
	switch {
	case db.Jurisdiction == "", dest == "", db.Jurisdiction == dest:
		return nil
	case r.cfg.AllowCrossJurisdiction:
		r.log.Warn("backing up outside the database's jurisdiction, as allowed", "database", db.Name, "jurisdiction", db.Jurisdiction, "destination_jurisdiction", dest)
		return nil
	}
	return &ResidencyError{Database: fmt.Sprintf("%s (%s)", db.Name, db.UUID), Jurisdiction: db.Jurisdiction, Dest: r.store.String(), DestJurisdiction: dest}
}
