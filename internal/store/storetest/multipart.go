package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/d1backup/d1backup/internal/store"
)

// multipartCases check the store.Multipart contract; every backend must
// implement it (the store step writes every dump through it).
func (s *suite) multipartCases() []testCase {
	return []testCase{
		{"Multipart/RoundTrip", s.mpRoundTrip},
		{"Multipart/ResumeInAnotherProcess", s.mpResume},
		{"Multipart/Existing", s.mpExisting},
		{"Multipart/Abort", s.mpAbort},
		{"Multipart/Rules", s.mpRules},
		{"Multipart/UnknownUpload", s.mpUnknown},
		{"Multipart/ListUploads", s.mpList},
	}
}

type testCase struct {
	name string
	fn   func(*testing.T)
}

func (s *suite) multipart(t *testing.T) (store.Store, store.Multipart) {
	t.Helper()
	st := s.open(t)
	mp, ok := st.(store.Multipart)
	if !ok {
		t.Fatalf("%T does not implement store.Multipart", st)
	}
	return st, mp
}

// mpPartSize is the smallest part size S3 accepts, which every backend
// must take.
const mpPartSize = store.MinPartSize

// bodyBytes is newBody(seed, n) as a slice.
func bodyBytes(seed byte, n int64) []byte {
	b, _ := io.ReadAll(newBody(seed, n))
	return b
}

func create(t *testing.T, mp store.Multipart, key string) string {
	t.Helper()
	id, err := mp.CreateUpload(context.Background(), key, store.UploadOptions{ContentType: "application/gzip", PartSize: mpPartSize})
	if err != nil {
		t.Fatalf("CreateUpload(%q): %v", key, err)
	}
	if id == "" {
		t.Fatalf("CreateUpload(%q) returned an empty ID", key)
	}
	return id
}

func uploadPart(t *testing.T, mp store.Multipart, key, id string, n int, body []byte) store.Part {
	t.Helper()
	p, err := mp.UploadPart(context.Background(), key, id, n, body)
	if err != nil {
		t.Fatalf("UploadPart(%d): %v", n, err)
	}
	if p.Number != n || p.Size != int64(len(body)) || p.ETag == "" {
		t.Fatalf("UploadPart(%d) = %+v, want number %d, size %d and an ETag", n, p, n, len(body))
	}
	return p
}

func checkBytes(t *testing.T, st store.Store, key string, want []byte) {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Get(%q): %d bytes that differ from the %d uploaded", key, len(got), len(want))
	}
}

func (s *suite) checkNoUploads(t *testing.T, mp store.Multipart, prefix string) {
	t.Helper()
	ups, err := mp.ListUploads(context.Background(), prefix)
	if err != nil {
		t.Fatalf("ListUploads(%q): %v", prefix, err)
	}
	for _, u := range ups {
		t.Errorf("upload still in progress: %s (%s)", u.Key, u.ID)
	}
}

// mpRoundTrip: parts uploaded at once and out of order make one object,
// invisible until completed; the upload is listed until then.
func (s *suite) mpRoundTrip(t *testing.T) {
	st, mp := s.multipart(t)
	ctx := context.Background()
	const key = "db/bookmark.sql.gz"
	bodies := [][]byte{bodyBytes(1, mpPartSize), bodyBytes(2, mpPartSize), bodyBytes(3, mpPartSize/2+7)}
	id := create(t, mp, key)
	parts := make([]store.Part, len(bodies))
	var wg sync.WaitGroup
	for i := len(bodies) - 1; i >= 0; i-- {
		wg.Go(func() { parts[i] = uploadPart(t, mp, key, id, i+1, bodies[i]) })
	}
	wg.Wait()
	if _, err := st.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat before CompleteUpload: err = %v, want ErrNotFound", err)
	}
	if objs, err := st.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Errorf("List before CompleteUpload = %v, %v; want nothing", keys(objs), err)
	}
	ups, err := mp.ListUploads(ctx, "db/")
	if err != nil || len(ups) != 1 || ups[0].Key != key || ups[0].ID != id || ups[0].Initiated.IsZero() {
		t.Errorf("ListUploads = %+v, %v; want the one upload of %s", ups, err, key)
	}
	obj, err := mp.CompleteUpload(ctx, key, id, parts)
	if err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	want := bytes.Join(bodies, nil)
	if obj.Key != key || obj.Size != int64(len(want)) {
		t.Errorf("CompleteUpload = %+v, want key %s, size %d", obj, key, len(want))
	}
	checkBytes(t, st, key, want)
	s.checkNoUploads(t, mp, "")
	if objs, err := st.List(ctx, ""); err != nil || len(objs) != 1 {
		t.Errorf("List after CompleteUpload = %v, %v; want the one object", keys(objs), err)
	}
}

// mpResume: another handle on the same store (another process, the next
// Lambda invocation) continues the upload with the ID alone, replaces a
// part, and completes with a subset of what was uploaded.
func (s *suite) mpResume(t *testing.T) {
	st, mp := s.multipart(t)
	const key = "db/resumed.sql.zst"
	id := create(t, mp, key)
	p1 := uploadPart(t, mp, key, id, 1, bodyBytes(1, mpPartSize))
	uploadPart(t, mp, key, id, 2, bodyBytes(2, mpPartSize))
	uploadPart(t, mp, key, id, 4, bodyBytes(4, 100)) // a crashed run's part beyond the end

	other := st
	if s.opts.Reopen != nil {
		other = s.opts.Reopen(t, st)
	}
	mp2 := other.(store.Multipart)
	p2 := uploadPart(t, mp2, key, id, 2, bodyBytes(5, mpPartSize)) // replaces part 2
	p3 := uploadPart(t, mp2, key, id, 3, bodyBytes(6, 1000))
	if _, err := mp2.CompleteUpload(context.Background(), key, id, []store.Part{p1, p2, p3}); err != nil {
		t.Fatalf("CompleteUpload from another handle: %v", err)
	}
	want := bytes.Join([][]byte{bodyBytes(1, mpPartSize), bodyBytes(5, mpPartSize), bodyBytes(6, 1000)}, nil)
	checkBytes(t, st, key, want)
	s.checkNoUploads(t, mp, "")
}

// mpExisting: completing over an existing key fails with ErrExists and
// leaves the object; the upload stays until aborted.
func (s *suite) mpExisting(t *testing.T) {
	st, mp := s.multipart(t)
	ctx := context.Background()
	const key = "db/taken.sql"
	id := create(t, mp, key)
	p := uploadPart(t, mp, key, id, 1, bodyBytes(1, 1000))
	put(t, st, key, 9, 50)
	if _, err := mp.CompleteUpload(ctx, key, id, []store.Part{p}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CompleteUpload over an existing key: err = %v, want ErrExists", err)
	}
	checkContent(t, st, key, 9, 50)
	ups, err := mp.ListUploads(ctx, "")
	if err != nil || len(ups) != 1 {
		t.Fatalf("ListUploads after a refused completion = %+v, %v; want the upload, for the caller to abort", ups, err)
	}
	if err := mp.AbortUpload(ctx, key, id); err != nil {
		t.Fatalf("AbortUpload: %v", err)
	}
	s.checkNoUploads(t, mp, "")
	checkContent(t, st, key, 9, 50)
}

// mpAbort: an aborted upload is gone for every later call, and aborting it
// again is fine.
func (s *suite) mpAbort(t *testing.T) {
	st, mp := s.multipart(t)
	ctx := context.Background()
	const key = "db/aborted.sql"
	id := create(t, mp, key)
	p := uploadPart(t, mp, key, id, 1, bodyBytes(1, mpPartSize))
	if err := mp.AbortUpload(ctx, key, id); err != nil {
		t.Fatalf("AbortUpload: %v", err)
	}
	if err := mp.AbortUpload(ctx, key, id); err != nil {
		t.Errorf("second AbortUpload: %v, want nil", err)
	}
	if _, err := mp.UploadPart(ctx, key, id, 2, bodyBytes(2, 10)); !errors.Is(err, store.ErrUploadNotFound) {
		t.Errorf("UploadPart after AbortUpload: err = %v, want ErrUploadNotFound", err)
	}
	if _, err := mp.CompleteUpload(ctx, key, id, []store.Part{p}); !errors.Is(err, store.ErrUploadNotFound) {
		t.Errorf("CompleteUpload after AbortUpload: err = %v, want ErrUploadNotFound", err)
	}
	s.checkAbsent(t, st, key)
	s.checkNoUploads(t, mp, "")
}

// mpRules: completions that break R2's rules fail and make nothing.
func (s *suite) mpRules(t *testing.T) {
	st, mp := s.multipart(t)
	ctx := context.Background()
	const key = "db/rules.sql"
	id := create(t, mp, key)
	full1 := uploadPart(t, mp, key, id, 1, bodyBytes(1, mpPartSize))
	short2 := uploadPart(t, mp, key, id, 2, bodyBytes(2, mpPartSize-1))
	last3 := uploadPart(t, mp, key, id, 3, bodyBytes(3, 10))
	wrongETag := full1
	wrongETag.ETag = `"0123456789abcdef0123456789abcdef"`
	wrongSize := last3
	wrongSize.Size = 9
	for _, tc := range []struct {
		name  string
		parts []store.Part
	}{
		{"no parts", nil},
		{"unequal parts", []store.Part{full1, short2, last3}},
		{"gap", []store.Part{full1, last3}},
		{"out of order", []store.Part{last3, full1}},
		{"wrong ETag", []store.Part{wrongETag, last3}},
		{"wrong size", []store.Part{full1, wrongSize}},
	} {
		parts := make([]store.Part, len(tc.parts))
		copy(parts, tc.parts)
		if tc.name == "gap" {
			parts[1].Number = 3
		}
		if _, err := mp.CompleteUpload(ctx, key, id, parts); err == nil {
			t.Errorf("CompleteUpload with %s succeeded; want an error", tc.name)
			return
		}
		if _, err := st.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat after CompleteUpload with %s: err = %v, want ErrNotFound", tc.name, err)
		}
	}
	if err := mp.AbortUpload(ctx, key, id); err != nil {
		t.Fatal(err)
	}
	s.checkAbsent(t, st, key)
}

// mpUnknown: an ID that names no upload is ErrUploadNotFound, whatever it
// looks like (IDs come back from checkpoints in the bucket).
func (s *suite) mpUnknown(t *testing.T) {
	st, mp := s.multipart(t)
	ctx := context.Background()
	const key = "db/unknown.sql"
	id := create(t, mp, key)
	for _, bogus := range []string{"bm90LWFuLXVwbG9hZA", "../../etc/passwd", strings.Repeat("9", 40)} {
		if _, err := mp.UploadPart(ctx, key, bogus, 1, []byte("x")); !errors.Is(err, store.ErrUploadNotFound) {
			t.Errorf("UploadPart(id %q): err = %v, want ErrUploadNotFound", bogus, err)
		}
		if _, err := mp.CompleteUpload(ctx, key, bogus, []store.Part{{Number: 1, ETag: `"x"`, Size: 1}}); !errors.Is(err, store.ErrUploadNotFound) {
			t.Errorf("CompleteUpload(id %q): err = %v, want ErrUploadNotFound", bogus, err)
		}
	}
	// The ID of one key does not reach another key's upload.
	if _, err := mp.UploadPart(ctx, "db/other.sql", id, 1, []byte("x")); !errors.Is(err, store.ErrUploadNotFound) {
		t.Errorf("UploadPart with another key's upload ID: err = %v, want ErrUploadNotFound", err)
	}
	if err := mp.AbortUpload(ctx, key, id); err != nil {
		t.Fatal(err)
	}
	s.checkAbsent(t, st, key)
	s.checkAbsent(t, st, "db/other.sql")
}

// mpList: ListUploads filters by key prefix and sorts by key.
func (s *suite) mpList(t *testing.T) {
	_, mp := s.multipart(t)
	ctx := context.Background()
	ids := map[string]string{}
	for _, k := range []string{"b/z.sql", "a/y.sql", "a/x.sql", "a-b/w.sql"} {
		ids[k] = create(t, mp, k)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a-b/w.sql", "a/x.sql", "a/y.sql", "b/z.sql"}},
		{"a/", []string{"a/x.sql", "a/y.sql"}},
		{"a", []string{"a-b/w.sql", "a/x.sql", "a/y.sql"}},
		{"a/x", []string{"a/x.sql"}},
		{"c/", nil},
	} {
		ups, err := mp.ListUploads(ctx, tc.prefix)
		if err != nil {
			t.Fatalf("ListUploads(%q): %v", tc.prefix, err)
		}
		var got []string
		for _, u := range ups {
			got = append(got, u.Key)
			if u.ID != ids[u.Key] {
				t.Errorf("ListUploads(%q): %s has ID %q, want %q", tc.prefix, u.Key, u.ID, ids[u.Key])
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ListUploads(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	for k, id := range ids {
		if err := mp.AbortUpload(ctx, k, id); err != nil {
			t.Fatal(err)
		}
	}
	s.checkNoUploads(t, mp, "")
}
