package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/d1backup/d1backup/internal/d1emu"
)

const usageHead = `Usage: d1emu [flags]

Serves the Cloudflare D1 REST API backed by local SQLite files, for demos,
scripts and manual runs of d1backup. Prints shell lines to stdout (export
CLOUDFLARE_API_BASE_URL=..., CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN,
D1EMU_PID, then one "# database NAME UUID dump sha256 HEX (N bytes)" line per
database, then "# ready"), closes stdout and serves until SIGINT/SIGTERM.
Logs go to stderr.

Start it and export its settings in the current shell:
  eval "$(d1emu --print-env 2>/tmp/d1emu.log &)"
  ...
  kill "$D1EMU_PID"
or from a script: d1emu --env-file /tmp/d1emu.env & and, once the file
exists, set -a; . /tmp/d1emu.env; set +a

`

func writeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, usageHead)
	const db = "/client/v4/accounts/{account_id}/d1/database"
	fmt.Fprintf(w, "D1 API, where $DB is %s\n(Authorization: Bearer $CLOUDFLARE_API_TOKEN), and signed URLs (no auth):\n", db)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range d1emu.Routes() {
		fmt.Fprintf(tw, "  %s\t%s %s\n", r.Endpoint, r.Method, strings.Replace(r.Path, db, "$DB", 1))
		fmt.Fprintf(tw, "  \t  %s\n", r.Doc)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nControl endpoints (no auth, not logged, never limited or faulted):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range d1emu.ControlRoutes() {
		fmt.Fprintf(tw, "  %s %s\t%s\n", r.Method, r.Path, r.Doc)
	}
	tw.Flush()
	fmt.Fprintln(w, `
Fault kinds, armed with POST /__emu/faults {"endpoint":E,"kind":K} (E "any":
every endpoint where K applies); optional "times" (hits, default 1), "after"
(matching requests let through first), "database" (UUID), "retry_after",
"sql" (write), "bytes" (drop_after):`)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range d1emu.FaultKinds() {
		fmt.Fprintf(tw, "  %s\t%s\n", k.Kind, k.Effect)
		fmt.Fprintf(tw, "  \t  endpoints: %s\n", strings.Join(k.Endpoints, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nFlags:")
	fs.PrintDefaults()
}
