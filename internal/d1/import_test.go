package d1_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
)

func importFile(sql string) d1.ImportFile {
	sum := md5.Sum([]byte(sql))
	return d1.ImportFile{Body: strings.NewReader(sql), Size: int64(len(sql)), MD5: hex.EncodeToString(sum[:])}
}

var fastPoll = d1.ImportOptions{PollInterval: time.Millisecond}

func TestCreateAndImport(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	f.emu.SetImportPolls(2)
	c := f.client(t, nil)
	ctx := context.Background()
	db, err := c.CreateDatabase(ctx, "restored")
	if err != nil {
		t.Fatal(err)
	}
	if !d1.IsUUID(db.UUID) || db.Name != "restored" {
		t.Fatalf("created %+v", db)
	}
	if _, err := c.CreateDatabase(ctx, "restored"); err == nil {
		t.Error("second database with the same name: no error")
	}
	const sql = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE IF NOT EXISTS t (a, b);\nINSERT INTO t VALUES(1,'x;y');\nINSERT INTO t VALUES(2,NULL);\n"
	var msgs []string
	opts := d1.ImportOptions{PollInterval: time.Millisecond, OnMessage: func(m string) { msgs = append(msgs, m) }}
	f.emu.ResetRequests()
	res, err := c.Import(ctx, db.UUID, importFile(sql), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := [4]any{res.NumQueries, res.RowsWritten, res.Uploaded, res.Polls}, [4]any{int64(4), int64(2), true, 3}; got != want {
		t.Errorf("queries, rows, uploaded, polls = %v, want %v", got, want)
	}
	if !bookmarkRE.MatchString(res.FinalBookmark) || res.FinalBookmark <= res.Bookmark || len(msgs) == 0 {
		t.Errorf("final bookmark %q after %q, messages %q", res.FinalBookmark, res.Bookmark, msgs)
	}
	// The protocol: init (etag), PUT without auth, ingest (etag, filename), polls.
	var got []string
	for _, r := range f.emu.Requests() {
		var b map[string]any
		json.Unmarshal(r.Body, &b) //nolint:errcheck
		step := r.Endpoint
		if a, ok := b["action"].(string); ok {
			step += ":" + a
		}
		if r.Endpoint == d1emu.EndpointUpload {
			if r.HasAuth || r.Method != "PUT" {
				t.Errorf("upload %s with auth=%v", r.Method, r.HasAuth)
			}
		} else if !r.HasAuth {
			t.Errorf("%s without auth", step)
		}
		switch {
		case step == "import:init" || step == "import:ingest":
			if b["etag"] != importFile(sql).MD5 {
				t.Errorf("%s body %s lacks the MD5 etag", step, r.Body)
			}
		case step == "import:poll":
			if b["current_bookmark"] != res.Bookmark {
				t.Errorf("poll body %s, want current_bookmark %s", r.Body, res.Bookmark)
			}
		}
		got = append(got, step)
	}
	if got, want := strings.Join(got, " "), "import:init upload import:ingest import:poll import:poll import:poll"; got != want {
		t.Errorf("requests %q, want %q", got, want)
	}

	// The same file again: D1 knows it, init starts the import at once.
	res, err = c.Import(ctx, db.UUID, importFile(sql), fastPoll)
	if err != nil || res.Uploaded || res.RowsWritten != 2 {
		t.Errorf("known file: %+v, %v; want no upload and 2 more rows", res, err)
	}
}

func TestImportFailures(t *testing.T) {
	t.Parallel()
	good := "CREATE TABLE t (a);\nINSERT INTO t VALUES(1);\n"
	for _, tt := range []struct {
		name    string
		file    d1.ImportFile
		fault   *d1emu.Fault
		want    any // pointer to the error type wanted
		message string
	}{
		{"etag mismatch", d1.ImportFile{Body: strings.NewReader(good), Size: int64(len(good)), MD5: strings.Repeat("0", 32)}, nil, new(*d1.UploadError), "ETag mismatch"},
		{"bad statement", importFile(good + "INSERT INTO nope VALUES(1);\n"), nil, new(*d1.ImportFailedError), "no such table: nope"},
		{"statement over 100 KB", importFile("CREATE TABLE t (a);\nINSERT INTO t VALUES('" + strings.Repeat("x", 100<<10) + "');\n"), nil, new(*d1.ImportFailedError), "statement too long"},
		{"transaction", importFile("BEGIN TRANSACTION;\n" + good + "COMMIT;\n"), nil, new(*d1.ImportFailedError), "BEGIN TRANSACTION"},
		{"status error", importFile(good), &d1emu.Fault{Endpoint: d1emu.EndpointImport, Kind: d1emu.FaultImportError}, new(*d1.ImportFailedError), "injected import failure"},
		{"upload keeps failing", importFile(good), &d1emu.Fault{Endpoint: d1emu.EndpointUpload, Kind: d1emu.FaultServerError, Times: 5}, new(*d1.UnavailableError), "HTTP 500"},
		{"bad token", importFile(good), &d1emu.Fault{Endpoint: d1emu.EndpointImport, Kind: d1emu.FaultBadToken}, new(*d1.AuthError), "rejected the API token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, d1emu.Options{})
			db, err := f.emu.CreateDatabase("target", "")
			if err != nil {
				t.Fatal(err)
			}
			if tt.fault != nil {
				f.emu.InjectFault(*tt.fault)
			}
			_, err = f.client(t, nil).Import(context.Background(), db.UUID, tt.file, fastPoll)
			if err == nil || !errors.As(err, tt.want) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("got %v, want %T containing %q", err, tt.want, tt.message)
			}
			if d1.IsRetryable(err) != (tt.name == "upload keeps failing") {
				t.Errorf("IsRetryable(%v) = %v", err, d1.IsRetryable(err))
			}
			// Atomic: nothing of the file is left.
			var dump bytes.Buffer
			f.emu.WriteDump(context.Background(), db.UUID, &dump) //nolint:errcheck
			if strings.Contains(dump.String(), "CREATE TABLE") {
				t.Errorf("failed import left:\n%s", dump.String())
			}
		})
	}
}

func TestImportRetriesPassingUploadFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, d1emu.Options{})
	db, _ := f.emu.CreateDatabase("target", "")
	f.emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointUpload, Kind: d1emu.FaultServerError})
	res, err := f.client(t, nil).Import(context.Background(), db.UUID, importFile("CREATE TABLE t (a);"), fastPoll)
	if err != nil || res.NumQueries != 1 {
		t.Fatalf("got %+v, %v; want the upload retried and the import done", res, err)
	}
}
