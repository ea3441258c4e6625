package d1

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"
)

// Rows is one statement's answer from the raw query endpoint: column names
// and rows of values as they crossed as JSON (string, float64, bool, nil,
// or []any for a BLOB). Select quote(...) to get exact values as text.
type Rows struct {
	Columns []string
	Rows    [][]any
}

// Raw runs sql (one statement, or several joined by semicolons) through
// POST .../raw and returns one Rows per statement. Each call is its own
// read: there is no snapshot across calls (see Bookmark). Failures are
// classified: a busy database (an export or import running) as
// ExportBusyError, an SQL error as QueryError, an answer that breaks the
// documented shape as BadAnswerError, and the API errors as for export.
func (c *Client) Raw(ctx context.Context, databaseID, sql string) ([]Rows, error) {
	const op = "query"
	var params cfd1.DatabaseRawParams
	params.AccountID.Value, params.AccountID.Present = c.cfg.AccountID, true
	var body cfd1.DatabaseRawParamsBodyD1SingleQuery
	body.Sql.Value, body.Sql.Present = sql, true
	params.Body = body
	res, err := c.db.Raw(ctx, databaseID, params)
	if err != nil {
		return nil, c.classifyQuery(ctx, op, databaseID, err)
	}
	if res == nil {
		return nil, &BadAnswerError{Op: op, Database: databaseID, Msg: "no result"}
	}
	out := make([]Rows, 0, len(res.Result))
	for i, r := range res.Result {
		if !r.Success {
			return nil, &QueryError{Op: op, Database: databaseID, Message: fmt.Sprintf("statement %d answered success=false", i+1)}
		}
		cols := r.Results.Columns
		for j, row := range r.Results.Rows {
			if len(row) != len(cols) {
				return nil, &BadAnswerError{Op: op, Database: databaseID, Msg: fmt.Sprintf("statement %d row %d has %d values for %d columns", i+1, j+1, len(row), len(cols))}
			}
		}
		out = append(out, Rows{Columns: cols, Rows: r.Results.Rows})
	}
	return out, nil
}

// classifyQuery is classify for the query endpoints: D1 answers an SQL
// error, and a query to a database that an export or import is blocking,
// with HTTP 400 and code 7500; the message tells them apart.
func (c *Client) classifyQuery(ctx context.Context, op, database string, err error) error {
	err = c.classify(ctx, op, database, err)
	var re *RequestError
	if !errors.As(err, &re) {
		return err
	}
	if strings.Contains(re.Message, "Currently processing a long-running") {
		return &ExportBusyError{Op: op, Database: database, Message: re.Message}
	}
	return &QueryError{Op: op, Database: database, Message: re.Message}
}

// QueryError is an SQL statement D1 refused or failed (syntax, a missing
// table, a value over D1's limits, a result over the response limit, a query
// over the 30 s limit). Doing the same again fails the same way; a smaller
// request may not.
type QueryError struct {
	Op       string
	Database string
	Message  string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("d1: %s: database %s refused the query: %s", e.Op, e.Database, e.Message)
}

// BadAnswerError is an API answer that is not what the documented wire
// format promises (a missing bookmark, a value that is not an SQL literal
// where one was asked for). It is never written anywhere: a dump is built
// only from answers that passed the checks.
type BadAnswerError struct {
	Op       string
	Database string
	Msg      string
}

func (e *BadAnswerError) Error() string {
	return fmt.Sprintf("d1: %s: database %s: unexpected answer from the API: %s", e.Op, e.Database, e.Msg)
}

// IsVirtualTableRefusal reports whether D1's export error message is its
// refusal to export a database holding a virtual table ("cannot export
// databases with Virtual Tables (fts5)").
func IsVirtualTableRefusal(msg string) bool {
	return strings.Contains(strings.ToLower(msg), "virtual table")
}
