package d1emu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/testenv"
)

func TestSyntheticSizes(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	for _, size := range []int64{0, 10, d1emu.MinSyntheticSize, d1emu.MinSyntheticSize + 1, d1emu.MinSyntheticSize + 199,
		d1emu.MinSyntheticSize + 200, d1emu.MinSyntheticSize + 201, 1000, 4096, 65537, 1 << 20, 3<<20 + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			db, err := e.AddSyntheticDatabase(fmt.Sprint("syn-", size), size)
			if err != nil {
				t.Fatal(err)
			}
			var a, b bytes.Buffer
			n, err := e.WriteDump(context.Background(), db.UUID, &a)
			if err != nil || n != size || int64(a.Len()) != size {
				t.Fatalf("WriteDump = %d bytes (%d buffered), %v; want %d", n, a.Len(), err, size)
			}
			e.WriteDump(context.Background(), db.UUID, &b)
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Error("not deterministic")
			}
			if size < d1emu.MinSyntheticSize {
				return
			}
			dump := a.String()
			if !strings.HasPrefix(dump, "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE ") || !strings.HasSuffix(dump, "\n") {
				t.Errorf("bad shape: %.80q ... %q", dump, dump[max(0, len(dump)-20):])
			}
			if size > 100_000 {
				return // importing megabytes is slow in pure-Go SQLite; the shape is the same
			}
			db2 := importDump(t, dump)
			rows := rowsOfQuery(t, db2, `SELECT count(*) FROM events`)
			if want := fmt.Sprint(strings.Count(dump, "\nINSERT INTO ")); rows[0] != want {
				t.Errorf("imported %s rows, dump has %s INSERTs", rows[0], want)
			}
		})
	}
}

func TestSyntheticDownloadAndBookmark(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db, _ := e.AddSyntheticDatabase("big", 5<<20)
	res := e.runExport(db.UUID)
	dl := e.download(res.Result.SignedURL)
	if dl.status != 200 || len(dl.body) != 5<<20 || dl.header.Get("Content-Length") != fmt.Sprint(5<<20) {
		t.Fatalf("download: HTTP %d, %d bytes, Content-Length %s", dl.status, len(dl.body), dl.header.Get("Content-Length"))
	}
	if string(dl.body) != e.dump(db.UUID) {
		t.Error("download differs from WriteDump")
	}
	if again := e.runExport(db.UUID); again.AtBookmark != res.AtBookmark {
		t.Errorf("bookmark changed: %s then %s", res.AtBookmark, again.AtBookmark)
	}
	if err := e.Exec(db.UUID, "SELECT 1"); err == nil {
		t.Error("Exec on a synthetic database succeeded")
	}
}

func TestSyntheticThroughput(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	const size = 256 << 20
	db, _ := e.AddSyntheticDatabase("fast", size)
	start := time.Now()
	n, err := e.WriteDump(context.Background(), db.UUID, io.Discard)
	elapsed := time.Since(start)
	if err != nil || n != size {
		t.Fatalf("WriteDump = %d, %v", n, err)
	}
	rate := float64(size) / elapsed.Seconds() / 1e9
	t.Logf("synthetic dump: %.2f GB/s", rate)
	// ~3 GB/s on an idle machine; leave room for a loaded CI box. The race
	// detector slows it tenfold.
	minRate := 0.5
	if raceEnabled {
		minRate = 0.05
	}
	if rate < minRate {
		t.Errorf("synthetic dump streams at %.2f GB/s", rate)
	}
}

func TestControlEndpoints(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	db := e.mustCreate("app", smallSeed)
	get := func(path string) []byte {
		t.Helper()
		r := e.do("GET", e.srv.URL+path, "", nil)
		if r.status != 200 {
			t.Fatalf("GET %s: HTTP %d %s", path, r.status, r.body)
		}
		return r.body
	}
	var dbs []d1emu.Database
	json.Unmarshal(get("/__emu/databases"), &dbs)
	if len(dbs) != 1 || dbs[0].UUID != db.UUID || dbs[0].Name != "app" {
		t.Errorf("databases = %+v", dbs)
	}
	if got := string(get("/__emu/databases/" + db.UUID + "/dump")); got != e.dump(db.UUID) {
		t.Errorf("control dump differs")
	}
	r, err := http.Post(e.srv.URL+"/__emu/databases/app/exec", "application/sql", strings.NewReader("INSERT INTO users (name) VALUES ('cy')"))
	if err != nil || r.StatusCode != 204 {
		t.Fatalf("exec: %v %v", r.StatusCode, err)
	}
	if !strings.Contains(e.dump(db.UUID), "'cy'") {
		t.Error("exec did not write")
	}
	r, err = http.Post(e.srv.URL+"/__emu/faults", "application/json", strings.NewReader(`{"endpoint":"get","kind":"server_error"}`))
	if err != nil || r.StatusCode != 204 {
		t.Fatalf("fault: %v %v", r.StatusCode, err)
	}
	e.ResetRequests()
	if r := e.do("GET", e.dbURL(db.UUID), e.Token(), nil); r.status != 500 {
		t.Errorf("after POST /__emu/faults: HTTP %d", r.status)
	}
	var reqs []struct {
		Method, Path, Endpoint string
		Status                 int
		HasAuth                bool `json:"has_auth"`
	}
	json.Unmarshal(get("/__emu/requests"), &reqs)
	if len(reqs) != 1 || reqs[0].Endpoint != "get" || reqs[0].Status != 500 || !reqs[0].HasAuth {
		t.Errorf("requests = %+v", reqs)
	}
}

func BenchmarkSyntheticDump(b *testing.B) {
	s, err := d1emu.New(d1emu.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const size = 64 << 20
	db, _ := s.AddSyntheticDatabase("bench", size)
	b.SetBytes(size)
	for b.Loop() {
		if _, err := s.WriteDump(context.Background(), db.UUID, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSyntheticStreamsFlat downloads a 1 GiB synthetic dump through its
// signed URL: the process's peak RSS stays within a small margin of the
// peak for a 32 MiB dump measured in the same run.
func TestSyntheticStreamsFlat(t *testing.T) {
	big := int64(1 << 30)
	if raceEnabled {
		big = 256 << 20 // the race detector makes 1 GiB take minutes; the shape is the same
	}
	e := newEmu(t, d1emu.Options{})
	measure := func(size int64) int64 {
		db, err := e.AddSyntheticDatabase(fmt.Sprint("syn-", size), size)
		if err != nil {
			t.Fatal(err)
		}
		url := e.runExport(db.UUID).Result.SignedURL
		runtime.GC()
		testenv.ResetPeakRSS()
		res, err := e.hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || n != size || res.ContentLength != size {
			t.Fatalf("download: %d of %d bytes (Content-Length %d), %v", n, size, res.ContentLength, err)
		}
		return testenv.PeakRSS()
	}
	small := measure(32 << 20)
	large := measure(big)
	t.Logf("peak RSS: %d MiB for 32 MiB, %d MiB for %d MiB (ratio %.2f)", small>>20, large>>20, big>>20, float64(large)/float64(small))
	if small > 0 && float64(large) > 1.25*float64(small) {
		t.Errorf("peak RSS %d MiB for a %d MiB dump against %d MiB for 32 MiB: memory grows with the dump", large>>20, big>>20, small>>20)
	}
}
