// Package d1emu is an in-process emulator of the Cloudflare D1 REST API,
// backed by real SQLite databases (modernc.org/sqlite, FTS5 included) and
// producing dumps in D1's format. It answers in the wire format that
// cloudflare-go v6's d1 package models, injects the faults a client must
// survive, and lets the real conditions (busy export, idle cancellation,
// expired URLs, virtual tables, rate limits) arise on their own.
//
// Routes lists the endpoints (list, create, get, export/poll, download,
// import, upload, query, raw, bookmark), ControlRoutes the /__emu/ control
// endpoints, FaultKinds the faults; cmd/d1emu --help prints all three.
//
// # Export
//
// The first request (no current_bookmark) snapshots the database into a
// dump file and answers "active" (HTTP 202) until Options.ExportPolls polls
// have been made; the last one answers "complete" with
// result.result.{filename,signed_url}. ExportPolls 0 completes in the first
// response. Later polls of the same bookmark repeat the URL until it expires
// (Options.URLTTL), then answer "Not currently exporting anything."; so does
// a poll after Options.IdleTimeout without polls. dump_options no_data,
// no_schema and tables are honoured (tables filters every object by its own
// name, sqlite_sequence included). A database holding a virtual table (FTS5:
// see FTS5SQL for contentful, external-content and contentless tables) ends
// its export in status "error" with D1's "cannot export databases with
// Virtual Tables (fts5)".
//
// Dump format choices where D1 is not documented: the sqlite3 shell's .dump
// is followed (sqlite_sequence after all other tables; newline escape tokens
// \n, \012, (\nN) as in its unused_string; reals integral -> "N.0", else the
// shortest round-tripping form; ±Inf as ±9.0e+999); BLOBs are upper-case
// X'..'; text containing NUL is written as CAST(X'..' AS TEXT); only
// sqlite_stat1 rows follow "ANALYZE sqlite_schema;" (sqlite_stat4 needs a
// STAT4 build to import and is rebuilt by ANALYZE anyway).
//
// Signed dump URLs point back at the host the client called
// (/__emu/dumps/<id>?X-Amz-Date=..&X-Amz-Expires=..&X-Amz-Signature=..), are
// an HMAC-SHA256 under a per-server random key, need no auth, and serve
// Content-Length, ETag and single byte ranges (206; a multi-range header is
// ignored as S3 ignores it). A synthetic database (AddSyntheticDatabase)
// generates its dump while it streams, so multi-GiB downloads run in flat
// memory; a range into it is generated from the start.
//
// # Bookmarks and Time Travel
//
// Bookmarks are %08x-%08x-%08x-%032x: a per-database write counter, then a
// hash of the database content, so an unchanged database gets the same
// bookmark again and any write a greater one. Every write advances the
// counter: the query API (when a statement changed rows or the schema),
// Exec and the control exec endpoint, an import, an injected write fault,
// and a change made behind the emulator's back to DBPath (seen as another
// PRAGMA data_version or another content hash the next time a bookmark is
// asked for). The bookmark endpoint without timestamp answers the current
// bookmark, as an export starting now would; with ?timestamp= (RFC 3339) it
// answers the bookmark of the last write at or before that time. Choices: a
// timestamp in the future, before the database's creation or older than
// TimeTravelRetention (30 days) is refused with HTTP 400, code 7400; a past
// version no request ever saw gets a bookmark derived from the database and
// the counter, fixed once given.
//
// # Query API
//
// POST .../query and .../raw take {"sql","params"} or {"batch":[{"sql",
// "params"}...]}. The answer holds one result per statement (a batch's
// statements in order): results as row objects for query, {"columns",
// "rows"} for raw, success, and meta (changed_db, changes, duration,
// last_row_id, rows_read, rows_written, served_by_colo, served_by_primary,
// served_by_region, size_after, timings.sql_duration_ms). Documented D1
// behaviour it follows:
//   - Values cross as JavaScript's JSON.stringify writes them: every number
//     is a float64 (integers beyond 2^53 lose precision: 9223372036854775807
//     arrives as 9223372036854776000), a BLOB is an array of byte values,
//     NULL is null, text is a string. Params bind as D1 binds JavaScript
//     values: null → NULL, an integral number → INTEGER, another number →
//     REAL, a string → TEXT, true/false → 1/0; arrays and objects are
//     refused with D1_TYPE_ERROR. Select quote(col) to read values exactly.
//   - D1's limits, set with sqlite3_limit on the query connection: SQL text
//     up to MaxStatementBytes (100,000 bytes: "statement too long:
//     SQLITE_TOOBIG"), values and rows up to 2,000,000 bytes, 100 columns,
//     100 bound parameters, 32 function arguments, LIKE/GLOB patterns up to
//     50 bytes. BEGIN/COMMIT/SAVEPOINT are refused with the message D1 gives
//     (MessageTransaction), as in imports.
//   - Errors answer HTTP 400, code 7500, with SQLite's message and result
//     code as D1 words them: `no such table: t: SQLITE_ERROR`, `near
//     "SELEC": syntax error at offset 0: SQLITE_ERROR`. A body that is not a
//     query answers 400, code 7400.
//   - A query while the database's export is active fails with code 7500
//     and MessageBusy; during an import, with MessageImportBusy.
//
// Choices where D1 documents nothing:
//   - SQLite splits the statements (prepare and its tail). Only the last
//     statement may have parameters, and exactly as many as given
//     (MessageParamsNotLast, MessageWrongParamCount: workerd's words); in a
//     batch each query has its own.
//   - A request runs in one transaction: any failure rolls every statement
//     back and answers only the error (no partial results).
//   - Options.MaxResponseBytes (default DefaultMaxResponseBytes, 100 MB, the
//     body limit of Cloudflare's Free and Pro plans) bounds the rendered
//     rows of a request; past it the request fails (code 7500) and is rolled
//     back. Options.MaxQueryDuration (default 30 s, D1's documented query
//     limit) interrupts the request (SQLITE_INTERRUPT), also rolled back.
//   - In /query, a column name that repeats keeps its first place and its
//     last value, as a JavaScript object does; /raw keeps every column.
//     ±Infinity is null and -0 is 0, as JSON.stringify writes them; text
//     that is not UTF-8 has U+FFFD in place of its bad bytes.
//   - meta: changes and rows_written are the statement's change in
//     total_changes() (triggers included); rows_read counts the rows
//     returned (D1 also counts rows scanned: read it as a lower bound);
//     last_row_id is the connection's last_insert_rowid(); changed_db is
//     true when rows or the schema changed; size_after is the file size after
//     the request commits; served_by_region follows the jurisdiction (eu:
//     WEUR, fedramp: ENAM), else the location hint, else ENAM, and
//     served_by_colo is a fixed airport code of that region.
//   - ATTACH (and so VACUUM INTO a file) is refused: SQLITE_LIMIT_ATTACHED 0.
//
// # Databases, jurisdictions, imports
//
// Databases carry a jurisdiction ("eu", "fedramp" or null on the wire) in
// list, get and create answers; create accepts jurisdiction and
// primary_location_hint (one of LocationHints) and refuses other values with
// HTTP 400, code 7400. CreateDatabase, AddDatabaseFile and
// AddSyntheticDatabase take WithJurisdiction and WithLocationHint.
//
// Imports run the whole file in one transaction (rolled back on any error)
// and enforce D1's limits: a statement over MaxStatementBytes (counted from
// its first token to its ';'), BEGIN/COMMIT/END/ROLLBACK/SAVEPOINT/RELEASE
// statements, an upload over MaxImportBytes. Imports lists every import run
// with its largest statement, so tests can assert that every statement D1
// received was under the limit.
//
// # Rate limit and faults
//
// Options.RateLimit models Cloudflare's rule (DefaultRateLimit: over 1200
// calls in 5 minutes, every API call answers HTTP 429, code 971, with
// Retry-After for 5 minutes); signed URLs and control endpoints are outside
// it. The one-shot rate_limit fault stays for single 429s.
//
// Faults are matched in injection order; After lets that many matching
// requests through first, then Times requests are hit. A write fault runs
// its SQL before the hit request is served, so with After N the write lands
// between the Nth and the (N+1)th matching request of a paging reader.
// drop_after cuts a download after Bytes body bytes (resumable downloads);
// ignore_range answers 200 with the whole body whatever the Range.
//
// Other choices:
//   - A wrong account id in the path answers HTTP 403, code 7403 ("The given
//     account is not valid or is not authorized to access this service").
//   - The rate limit, then injected faults, are checked before
//     authentication, the way Cloudflare's edge answers before the API sees
//     the request.
//   - Control endpoints under /__emu/ need no auth (loopback use only).
package d1emu
