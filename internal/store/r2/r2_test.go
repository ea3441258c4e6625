package r2_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/r2"
	"github.com/d1backup/d1backup/internal/store/storetest"
	"github.com/d1backup/d1backup/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const partSize = r2.MinPartSize

// buckets remembers which bucket each opened store writes to, for the
// suite's NoPartialUploads hook.
var buckets sync.Map // *r2.Store → string

var opened atomic.Int64

// open returns a store in a fresh bucket on the shared versitygw; every
// other one under a prefix, so both key mappings are exercised.
func open(t *testing.T, hc *http.Client) (*r2.Store, string) {
	t.Helper()
	env := testenv.RequireS3(t)
	bucket := env.NewBucket(t)
	prefix := ""
	if opened.Add(1)%2 == 0 {
		prefix = "backups/daily"
	}
	if hc == nil {
		hc = env.HTTPClient
	}
	s, err := r2.New(r2.Config{
		Endpoint:        env.Endpoint,
		Bucket:          bucket,
		Prefix:          prefix,
		AccessKeyID:     env.AccessKeyID,
		SecretAccessKey: env.SecretAccessKey,
		PartSize:        partSize,
		Concurrency:     3,
		HTTPClient:      hc,
	})
	if err != nil {
		t.Fatal(err)
	}
	buckets.Store(s, bucket)
	return s, bucket
}

// reopen opens another store on the bucket and prefix of s, as another
// process would.
func reopen(t *testing.T, s *r2.Store, bucket string) *r2.Store {
	t.Helper()
	env := testenv.RequireS3(t)
	_, prefix, _ := strings.Cut(strings.TrimPrefix(s.String(), "r2://"), "/")
	other, err := r2.New(r2.Config{
		Endpoint: env.Endpoint, Bucket: bucket, Prefix: prefix,
		AccessKeyID: env.AccessKeyID, SecretAccessKey: env.SecretAccessKey,
		PartSize: partSize, Concurrency: 3, HTTPClient: env.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	buckets.Store(other, bucket)
	return other
}

// noUploads fails t if any multipart upload is in progress in bucket.
func noUploads(t *testing.T, s *r2.Store, bucket string) {
	t.Helper()
	out, err := s.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	for _, u := range out.Uploads {
		t.Errorf("multipart upload left in progress: key %q, id %s", aws.ToString(u.Key), aws.ToString(u.UploadId))
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := open(t, nil)
		return s
	}, storetest.Options{
		PartSize: partSize,
		NoPartialUploads: func(t *testing.T, st store.Store, key string) {
			s := st.(*r2.Store)
			bucket, _ := buckets.Load(s)
			noUploads(t, s, bucket.(string))
		},
		Reopen: func(t *testing.T, st store.Store) store.Store {
			s := st.(*r2.Store)
			bucket, _ := buckets.Load(s)
			return reopen(t, s, bucket.(string))
		},
	})
}

// recorder is an http.RoundTripper that notes every request and can fail
// chosen ones, to see what the SDK really sends.
type recorder struct {
	base http.RoundTripper
	fail func(*http.Request) error

	mu   sync.Mutex
	reqs []request
}

type request struct {
	method string
	query  url.Values
	header http.Header
	length int64
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, request{req.Method, req.URL.Query(), req.Header.Clone(), req.ContentLength})
	r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(req); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
	}
	return r.base.RoundTrip(req)
}

func (r *recorder) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

func newRecorder(t *testing.T) (*recorder, *http.Client) {
	env := testenv.RequireS3(t)
	rec := &recorder{base: env.HTTPClient.Transport}
	return rec, &http.Client{Transport: rec}
}

func isUploadPart(r request) bool {
	return r.method == http.MethodPut && r.query.Has("partNumber") && r.query.Has("uploadId")
}

// parts returns the sizes of the UploadPart requests, in part order.
func parts(t *testing.T, reqs []request) []int64 {
	t.Helper()
	byNum := map[int]int64{}
	for _, r := range reqs {
		if !isUploadPart(r) {
			continue
		}
		n, err := strconv.Atoi(r.query.Get("partNumber"))
		if err != nil {
			t.Fatalf("bad partNumber %q", r.query.Get("partNumber"))
		}
		if _, dup := byNum[n]; dup {
			t.Errorf("part %d sent twice", n)
		}
		byNum[n] = r.length
	}
	nums := make([]int, 0, len(byNum))
	for n := range byNum {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	sizes := make([]int64, len(nums))
	for i, n := range nums {
		if n != i+1 {
			t.Errorf("part numbers %v are not 1..%d", nums, len(nums))
			break
		}
		sizes[i] = byNum[n]
	}
	return sizes
}

// checkNoChecksums asserts no request carries the checksum headers or the
// aws-chunked encoding that R2 has rejected.
func checkNoChecksums(t *testing.T, reqs []request) {
	t.Helper()
	for _, r := range reqs {
		for k, v := range r.header {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-amz-checksum-") || lk == "x-amz-sdk-checksum-algorithm" || lk == "x-amz-trailer" ||
				(lk == "content-encoding" && strings.Contains(strings.Join(v, ","), "aws-chunked")) ||
				(lk == "x-amz-content-sha256" && strings.Contains(strings.Join(v, ","), "STREAMING")) {
				t.Errorf("%s %v carries %s: %v", r.method, r.query, k, v)
			}
		}
	}
}

// stream is n random bytes behind a plain io.Reader (no Seeker, no Len).
func stream(data []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(data)} }

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// R2 rejects multipart uploads whose parts (but the last) differ in size,
// and no local server checks it: pin it on the wire.
func TestPartsHaveEqualSizes(t *testing.T) {
	const size = 7 * partSize / 2 // 3.5 parts
	for _, tc := range []struct {
		name     string
		known    bool
		maxParts int64
		want     []int64
	}{
		{"unknown-size", false, 0, []int64{partSize, partSize, partSize, partSize / 2}},
		{"known-size", true, 0, []int64{partSize, partSize, partSize, partSize / 2}},
		// 17.5 MiB in at most 3 parts: the part size grows to a whole 6 MiB.
		{"known-size/grown", true, 3, []int64{6 * r2.MiB, 6 * r2.MiB, size - 12*r2.MiB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, hc := newRecorder(t)
			s, _ := open(t, hc)
			if tc.maxParts > 0 {
				r2.SetMaxParts(s, tc.maxParts)
			}
			data := random(t, size)
			opts := store.PutOptions{Size: -1, ContentType: "application/gzip"}
			if tc.known {
				opts.Size = size
			}
			if _, err := s.Put(context.Background(), "db/dump.sql.gz", stream(data), opts); err != nil {
				t.Fatal(err)
			}
			reqs := rec.requests()
			if got, want := fmt.Sprint(parts(t, reqs)), fmt.Sprint(tc.want); got != want {
				t.Errorf("part sizes = %s, want %s", got, want)
			}
			checkNoChecksums(t, reqs)
			var completes int
			for _, r := range reqs {
				if r.method == http.MethodPost && r.query.Has("uploadId") {
					completes++
					if got, want := r.header.Get("If-None-Match"), "*"; got != want {
						t.Errorf("CompleteMultipartUpload If-None-Match = %q, want %q", got, want)
					}
				}
			}
			if completes != 1 {
				t.Errorf("%d CompleteMultipartUpload requests, want 1", completes)
			}
			checkGet(t, s, "db/dump.sql.gz", data)
		})
	}
}

func checkGet(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Get(%q): %d bytes differ from the %d put", key, len(got), len(want))
	}
}

// A body shorter than a part goes in one conditional PutObject.
func TestSmallBodyIsOnePutObject(t *testing.T) {
	t.Parallel()
	rec, hc := newRecorder(t)
	s, _ := open(t, hc)
	data := random(t, partSize-1)
	if _, err := s.Put(context.Background(), "small", stream(data), store.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	var puts []request
	for _, r := range rec.requests() {
		if r.method == http.MethodPut || r.method == http.MethodPost {
			puts = append(puts, r)
		}
	}
	if len(puts) != 1 || puts[0].query.Get("x-id") != "PutObject" {
		t.Fatalf("got %d PUT/POST requests (%v), want one PutObject", len(puts), puts)
	}
	if got, want := puts[0].header.Get("If-None-Match"), "*"; got != want {
		t.Errorf("PutObject If-None-Match = %q, want %q", got, want)
	}
	if got, want := puts[0].length, int64(len(data)); got != want {
		t.Errorf("PutObject Content-Length = %d, want %d", got, want)
	}
	checkNoChecksums(t, rec.requests())
	checkGet(t, s, "small", data)
}

// With an unknown size the object is capped at MaxParts parts, with an error
// that says so, and the upload is aborted.
func TestTooManyPartsUnknownSize(t *testing.T) {
	t.Parallel()
	s, bucket := open(t, nil)
	r2.SetMaxParts(s, 3)
	_, err := s.Put(context.Background(), "big", stream(random(t, 3*partSize+1)), store.PutOptions{Size: -1})
	if err == nil || !strings.Contains(err.Error(), "longer than 3 parts") {
		t.Fatalf("Put: err = %v, want one about the part limit", err)
	}
	if _, err := s.Stat(context.Background(), "big"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat: err = %v, want ErrNotFound", err)
	}
	noUploads(t, s, bucket)
}

// A part that cannot be uploaded fails the Put and aborts the upload.
func TestPartFailureAborts(t *testing.T) {
	t.Parallel()
	rec, hc := newRecorder(t)
	injected := errors.New("injected part failure")
	rec.fail = func(r *http.Request) error {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" {
			return injected
		}
		return nil
	}
	s, bucket := open(t, hc)
	_, err := s.Put(context.Background(), "db/x", stream(random(t, 3*partSize)), store.PutOptions{Size: 3 * partSize})
	if !errors.Is(err, injected) {
		t.Fatalf("Put: err = %v, want the injected failure", err)
	}
	var aborts int
	for _, r := range rec.requests() {
		if r.method == http.MethodDelete && r.query.Has("uploadId") {
			aborts++
		}
	}
	if aborts == 0 {
		t.Error("no AbortMultipartUpload request")
	}
	if _, err := s.Stat(context.Background(), "db/x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat: err = %v, want ErrNotFound", err)
	}
	noUploads(t, s, bucket)
}

// When another writer creates the key while a multipart upload is under way,
// CompleteMultipartUpload's If-None-Match refuses it (412): Put reports
// ErrExists, the other object survives and the upload is aborted.
func TestConcurrentWriterWins(t *testing.T) {
	t.Parallel()
	s, bucket := open(t, nil)
	ctx := context.Background()
	const key = "db/race.sql.gz"
	winner := []byte("the other writer's backup")
	data := random(t, 2*partSize+partSize/2)
	body := &hookReader{r: bytes.NewReader(data), at: partSize + 1, hook: func() {
		if _, err := s.Put(ctx, key, bytes.NewReader(winner), store.PutOptions{Size: int64(len(winner))}); err != nil {
			t.Errorf("other writer's Put: %v", err)
		}
	}}
	_, err := s.Put(ctx, key, body, store.PutOptions{Size: -1})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("Put: err = %v, want ErrExists", err)
	}
	checkGet(t, s, key, winner)
	noUploads(t, s, bucket)
}

// hookReader calls hook once, after at bytes.
type hookReader struct {
	r    io.Reader
	n    int64
	at   int64
	hook func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.hook != nil && h.n >= h.at {
		h.hook()
		h.hook = nil
	}
	n, err := h.r.Read(p)
	h.n += int64(n)
	return n, err
}

func TestNewValidates(t *testing.T) {
	good := r2.Config{Endpoint: "https://acct.r2.cloudflarestorage.com", Bucket: "b", AccessKeyID: "id", SecretAccessKey: "topsecret"}
	for _, tc := range []struct {
		field string
		edit  func(*r2.Config)
	}{
		{"Endpoint", func(c *r2.Config) { c.Endpoint = "" }},
		{"Endpoint", func(c *r2.Config) { c.Endpoint = "acct.r2.cloudflarestorage.com" }},
		{"Bucket", func(c *r2.Config) { c.Bucket = "" }},
		{"AccessKeyID", func(c *r2.Config) { c.AccessKeyID = "" }},
		{"SecretAccessKey", func(c *r2.Config) { c.SecretAccessKey = "" }},
		{"PartSize", func(c *r2.Config) { c.PartSize = r2.MinPartSize - 1 }},
		{"PartSize", func(c *r2.Config) { c.PartSize = r2.MaxPartSize + 1 }},
		{"Concurrency", func(c *r2.Config) { c.Concurrency = -1 }},
		{"Prefix", func(c *r2.Config) { c.Prefix = "a/../b" }},
	} {
		cfg := good
		tc.edit(&cfg)
		_, err := r2.New(cfg)
		if err == nil {
			t.Errorf("New with bad %s succeeded", tc.field)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("New with bad %s: error %q does not name the field", tc.field, err)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("error %q contains the secret", err)
		}
	}
	if _, err := r2.New(good); err != nil {
		t.Errorf("New(good): %v", err)
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"", "r2://b"},
		{"backups", "r2://b/backups"},
		{"/backups/", "r2://b/backups"},
		{"a/b/", "r2://b/a/b"},
	} {
		s, err := r2.New(r2.Config{Endpoint: "https://x.example", Bucket: "b", Prefix: tc.prefix, AccessKeyID: "id", SecretAccessKey: "topsecret"})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != tc.want {
			t.Errorf("String() with Prefix %q = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// The prefix is applied on the wire and stripped from listed keys.
func TestPrefixOnTheWire(t *testing.T) {
	t.Parallel()
	env := testenv.RequireS3(t)
	bucket := env.NewBucket(t)
	ctx := context.Background()
	newStore := func(prefix string) *r2.Store {
		s, err := r2.New(r2.Config{Endpoint: env.Endpoint, Bucket: bucket, Prefix: prefix, AccessKeyID: env.AccessKeyID,
			SecretAccessKey: env.SecretAccessKey, HTTPClient: env.HTTPClient})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	in, root := newStore("team/backups"), newStore("")
	if _, err := in.Put(ctx, "db/1.sql", strings.NewReader("one"), store.PutOptions{Size: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Stat(ctx, "team/backups/db/1.sql"); err != nil {
		t.Errorf("object not at the prefixed key: %v", err)
	}
	objs, err := in.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Key != "db/1.sql" {
		t.Errorf("List = %v, want [db/1.sql]", objs)
	}
}

func TestGetMissingBucketIsNotErrNotFound(t *testing.T) {
	t.Parallel()
	env := testenv.RequireS3(t)
	s, err := r2.New(r2.Config{Endpoint: env.Endpoint, Bucket: "no-such-bucket-d1backup", AccessKeyID: env.AccessKeyID,
		SecretAccessKey: env.SecretAccessKey, HTTPClient: env.HTTPClient})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(context.Background(), "k")
	if err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get from a missing bucket: err = %v, want an error that is not ErrNotFound", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	env := testenv.RequireS3(t)
	bucket := env.NewBucket(t)
	s, err := r2.New(r2.Config{Endpoint: env.Endpoint, Bucket: bucket, AccessKeyID: env.AccessKeyID,
		SecretAccessKey: "wrong-secret-value", HTTPClient: env.HTTPClient})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(context.Background(), "k", strings.NewReader("v"), store.PutOptions{Size: 1})
	if err == nil {
		t.Fatal("Put with a wrong secret succeeded")
	}
	if r2.IsRetryable(err) {
		t.Errorf("IsRetryable(%v) = true, want false for bad credentials", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-value") {
		t.Errorf("error %q contains the secret", err)
	}
}
