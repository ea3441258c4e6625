// Package storetest is the conformance suite every store.Store passes. A
// backend's test calls Run with a function that opens an empty store; the
// suite checks the contract documented on store.Store, with real bytes.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/store"
)

// Options adapt the suite to a backend.
type Options struct {
	// PartSize is the upload part size the store was opened with, so bodies
	// can span several parts; 0 means 1 MiB.
	PartSize int64
	// NoPartialUploads, if set, is called after every failed Put to assert
	// that nothing of key lingers where the Store interface cannot see it
	// (for S3: no multipart upload in progress).
	NoPartialUploads func(t *testing.T, s store.Store, key string)
	// Reopen, if set, opens another handle on the same store (as another
	// process would), for the multipart resume case; nil reuses s.
	Reopen func(t *testing.T, s store.Store) store.Store
}

// Run runs the suite. open must return a new, empty store each call (the
// subtests run in parallel).
func Run(t *testing.T, open func(t *testing.T) store.Store, opts Options) {
	if opts.PartSize == 0 {
		opts.PartSize = 1 << 20
	}
	s := suite{open: open, opts: opts}
	for _, tc := range append([]testCase{
		{"RoundTrip", s.roundTrip},
		{"PutExisting", s.putExisting},
		{"Replace", s.replace},
		{"ReaderError", s.readerError},
		{"SizeMismatch", s.sizeMismatch},
		{"ContextCancelled", s.contextCancelled},
		{"List", s.list},
		{"Stat", s.stat},
		{"Delete", s.delete},
		{"NestedKeys", s.nestedKeys},
		{"InvalidKeys", s.invalidKeys},
		{"String", s.string},
	}, s.multipartCases()...) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

type suite struct {
	open func(t *testing.T) store.Store
	opts Options
}

// errSource is what failing bodies return; Put's error must wrap it so a
// caller can tell the source failed, not the store.
var errSource = errors.New("storetest: source failed")

// body is a stream of n pseudo-random bytes (seeded, so reproducible) that
// is not an io.Seeker, like a download. It can fail or call hook after some
// bytes.
type body struct {
	rng    *rand.ChaCha8
	n      int64 // bytes left
	read   int64
	failAt int64 // return errSource once read reaches it; <0: never
	hookAt int64
	hook   func()
}

func newBody(seed byte, n int64) *body {
	var s [32]byte
	s[0] = seed
	return &body{rng: rand.NewChaCha8(s), n: n, failAt: -1, hookAt: -1}
}

func (b *body) Read(p []byte) (int, error) {
	if b.failAt >= 0 && b.read >= b.failAt {
		return 0, errSource
	}
	if b.hook != nil && b.read >= b.hookAt {
		b.hook()
		b.hook = nil
	}
	if b.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	if b.failAt >= 0 && int64(len(p)) > b.failAt-b.read {
		p = p[:b.failAt-b.read]
	}
	if b.hook != nil && int64(len(p)) > b.hookAt-b.read {
		p = p[:b.hookAt-b.read]
	}
	b.rng.Read(p)
	b.n -= int64(len(p))
	b.read += int64(len(p))
	return len(p), nil
}

// sum is the SHA-256 and length of the body newBody(seed, n) yields.
func sum(seed byte, n int64) [32]byte {
	h := sha256.New()
	io.Copy(h, newBody(seed, n))
	return [32]byte(h.Sum(nil))
}

func put(t *testing.T, s store.Store, key string, seed byte, n int64) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, newBody(seed, n), store.PutOptions{Size: n}); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// checkContent reads key back and compares its hash with the body's.
func checkContent(t *testing.T, s store.Store, key string, seed byte, n int64) {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	got, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	if got != n {
		t.Errorf("Get(%q) read %d bytes, want %d", key, got, n)
	}
	if [32]byte(h.Sum(nil)) != sum(seed, n) {
		t.Errorf("Get(%q): SHA-256 differs from what was put", key)
	}
}

// checkAbsent asserts that key holds nothing after a failed Put: not for
// Stat, Get or List, nor for the backend's own hook.
func (s *suite) checkAbsent(t *testing.T, st store.Store, key string) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(%q) after failed Put: err = %v, want ErrNotFound", key, err)
	}
	if rc, err := st.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("Get(%q) after failed Put: err = %v, want ErrNotFound", key, err)
	}
	objs, err := st.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(objs) != 0 {
		t.Errorf("List after failed Put = %v, want nothing", keys(objs))
	}
	if s.opts.NoPartialUploads != nil {
		s.opts.NoPartialUploads(t, st, key)
	}
}

func keys(objs []store.Object) []string {
	ks := make([]string, len(objs))
	for i, o := range objs {
		ks[i] = o.Key
	}
	return ks
}

func (s *suite) roundTrip(t *testing.T) {
	ps := s.opts.PartSize
	for i, tc := range []struct {
		name  string
		size  int64
		known bool
	}{
		{"empty", 0, true},
		{"empty/unknown-size", 0, false},
		{"small", 1000, true},
		{"small/unknown-size", 1000, false},
		{"one-part-less-one", ps - 1, false},
		{"exactly-one-part", ps, false},
		{"exactly-two-parts", 2 * ps, true},
		{"2.5-parts", ps*5/2 + 7, true},
		{"2.5-parts/unknown-size", ps*5/2 + 7, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := s.open(t)
			seed := byte(i + 1)
			size := int64(-1)
			if tc.known {
				size = tc.size
			}
			key := "dumps/" + strings.ReplaceAll(tc.name, "/", "-") + ".sql"
			obj, err := st.Put(context.Background(), key, newBody(seed, tc.size), store.PutOptions{ContentType: "application/sql", Size: size})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if got, want := obj.Key, key; got != want {
				t.Errorf("Put returned Key %q, want %q", got, want)
			}
			if got, want := obj.Size, tc.size; got != want {
				t.Errorf("Put returned Size %d, want %d", got, want)
			}
			checkContent(t, st, key, seed, tc.size)
			info, err := st.Stat(context.Background(), key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if got, want := info.Size, tc.size; got != want {
				t.Errorf("Stat Size = %d, want %d", got, want)
			}
		})
	}
}

func (s *suite) putExisting(t *testing.T) {
	ps := s.opts.PartSize
	for i, n := range []int64{10, ps*2 + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			st := s.open(t)
			ctx := context.Background()
			const key = "db/backup.sql.gz"
			put(t, st, key, 1, 100)
			_, err := st.Put(ctx, key, newBody(byte(i+2), n), store.PutOptions{Size: -1})
			if !errors.Is(err, store.ErrExists) {
				t.Fatalf("second Put: err = %v, want ErrExists", err)
			}
			checkContent(t, st, key, 1, 100)
		})
	}
}

// replace: with Replace, Put swaps the object whole, and works on an absent
// key too.
func (s *suite) replace(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	const key = "db/backup.sql.gz.manifest.json"
	if _, err := st.Put(ctx, key, newBody(1, 100), store.PutOptions{Size: 100, Replace: true}); err != nil {
		t.Fatalf("Put with Replace of an absent key: %v", err)
	}
	checkContent(t, st, key, 1, 100)
	if _, err := st.Put(ctx, key, newBody(2, 50), store.PutOptions{Size: 50, Replace: true}); err != nil {
		t.Fatalf("Put with Replace: %v", err)
	}
	checkContent(t, st, key, 2, 50)
	objs, err := st.List(ctx, "db/")
	if err != nil || len(objs) != 1 {
		t.Fatalf("List after Replace = %v, %v; want the one object", keys(objs), err)
	}
}

func (s *suite) readerError(t *testing.T) {
	ps := s.opts.PartSize
	for _, tc := range []struct {
		name   string
		failAt int64
		known  bool
	}{
		{"at-start", 0, false},
		{"within-first-part", 100, true},
		{"in-second-part", ps + ps/2, false},
		{"in-second-part/known-size", ps + ps/2, true},
		{"in-fourth-part", 3*ps + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := s.open(t)
			const key = "db/broken.sql"
			b := newBody(9, 4*ps)
			b.failAt = tc.failAt
			size := int64(-1)
			if tc.known {
				size = 4 * ps
			}
			_, err := st.Put(context.Background(), key, b, store.PutOptions{Size: size})
			if !errors.Is(err, errSource) {
				t.Fatalf("Put: err = %v, want one wrapping the source's error", err)
			}
			s.checkAbsent(t, st, key)
		})
	}
}

func (s *suite) sizeMismatch(t *testing.T) {
	ps := s.opts.PartSize
	for _, tc := range []struct {
		name       string
		size, body int64
	}{
		{"shorter", 1000, 500},
		{"longer", 500, 1000},
		{"shorter/multipart", 3 * ps, 2*ps + 10},
		{"longer/multipart", 2*ps + 10, 3 * ps},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := s.open(t)
			const key = "db/mismatch.sql"
			_, err := st.Put(context.Background(), key, newBody(3, tc.body), store.PutOptions{Size: tc.size})
			if err == nil {
				t.Fatalf("Put of %d bytes with Size %d succeeded; want an error", tc.body, tc.size)
			}
			s.checkAbsent(t, st, key)
		})
	}
}

func (s *suite) contextCancelled(t *testing.T) {
	ps := s.opts.PartSize
	for _, tc := range []struct {
		name     string
		cancelAt int64 // <0: before Put
	}{
		{"before", -1},
		{"first-part", 10},
		{"mid-stream", ps + ps/2},
		{"third-part", 2*ps + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := s.open(t)
			const key = "db/cancelled.sql"
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b := newBody(4, 4*ps)
			if tc.cancelAt < 0 {
				cancel()
			} else {
				b.hookAt, b.hook = tc.cancelAt, cancel
			}
			_, err := st.Put(ctx, key, b, store.PutOptions{Size: -1})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Put: err = %v, want context.Canceled", err)
			}
			s.checkAbsent(t, st, key)
		})
	}
}

func (s *suite) list(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	all := []string{"list/b/d", "list/a", "list-x/e", "list/b/c", "other/f", "list/b-c"}
	for i, k := range all {
		put(t, st, k, byte(i), int64(10+i))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"list-x/e", "list/a", "list/b-c", "list/b/c", "list/b/d", "other/f"}},
		{"list/", []string{"list/a", "list/b-c", "list/b/c", "list/b/d"}},
		{"list", []string{"list-x/e", "list/a", "list/b-c", "list/b/c", "list/b/d"}},
		{"list/b", []string{"list/b-c", "list/b/c", "list/b/d"}},
		{"list/b/", []string{"list/b/c", "list/b/d"}},
		{"list/a", []string{"list/a"}},
		{"none/", nil},
		{"list/z", nil},
	} {
		objs, err := st.List(ctx, tc.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tc.prefix, err)
			continue
		}
		if got, want := strings.Join(keys(objs), " "), strings.Join(tc.want, " "); got != want {
			t.Errorf("List(%q) = [%s], want [%s]", tc.prefix, got, want)
		}
		for _, o := range objs {
			i := indexOf(all, o.Key)
			if got, want := o.Size, int64(10+i); got != want {
				t.Errorf("List(%q): %s has Size %d, want %d", tc.prefix, o.Key, got, want)
			}
		}
	}
}

func indexOf(ss []string, s string) int {
	for i, v := range ss {
		if v == s {
			return i
		}
	}
	return -1
}

func (s *suite) stat(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	before := time.Now()
	put(t, st, "s/obj", 5, 12345)
	obj, err := st.Stat(ctx, "s/obj")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if got, want := obj.Key, "s/obj"; got != want {
		t.Errorf("Stat Key = %q, want %q", got, want)
	}
	if got, want := obj.Size, int64(12345); got != want {
		t.Errorf("Stat Size = %d, want %d", got, want)
	}
	// Servers keep whole seconds, and clocks differ a little.
	if obj.Modified.Before(before.Add(-time.Minute)) || obj.Modified.After(time.Now().Add(time.Minute)) {
		t.Errorf("Stat Modified = %v, want about %v", obj.Modified, before)
	}
	for _, key := range []string{"s/missing", "missing", "s/obj/below", "s"} {
		if _, err := st.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat(%q): err = %v, want ErrNotFound", key, err)
		}
		if rc, err := st.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q): err = %v, want ErrNotFound", key, err)
		}
	}
}

func (s *suite) delete(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, "d/one", 1, 10)
	put(t, st, "d/two", 2, 10)
	if err := st.Delete(ctx, "d/one"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := st.Stat(ctx, "d/one"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after Delete: err = %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, "d/one"); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
	if err := st.Delete(ctx, "never/there"); err != nil {
		t.Errorf("Delete of a key never put: %v, want nil", err)
	}
	objs, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(keys(objs), " "), "d/two"; got != want {
		t.Errorf("List after Delete = [%s], want [%s]", got, want)
	}
	// The key can be written again once deleted.
	put(t, st, "d/one", 3, 20)
	checkContent(t, st, "d/one", 3, 20)
}

func (s *suite) nestedKeys(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	ks := []string{
		"0b1c2d3e-aaaa-bbbb-cccc-123456789abc/2025/01/02/00000001-deadbeef.sql.gz",
		"0b1c2d3e-aaaa-bbbb-cccc-123456789abc/2025/01/02/00000001-deadbeef.json",
		"a/b/c/d/e/f/g/h",
		"with space/and+plus=equals@at~tilde.sql",
	}
	for i, k := range ks {
		put(t, st, k, byte(i), int64(100+i))
	}
	for i, k := range ks {
		checkContent(t, st, k, byte(i), int64(100+i))
	}
	objs, err := st.List(ctx, "0b1c2d3e-aaaa-bbbb-cccc-123456789abc/2025/")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(keys(objs), " "), ks[1]+" "+ks[0]; got != want {
		t.Errorf("List = [%s], want [%s]", got, want)
	}
}

func (s *suite) invalidKeys(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	for _, key := range []string{"", "/abs", "a/../b", "..", "../up", "a//b", "a/", "./a", "a/."} {
		if _, err := st.Put(ctx, key, bytes.NewReader([]byte("x")), store.PutOptions{Size: 1}); err == nil || errors.Is(err, store.ErrExists) {
			t.Errorf("Put(%q): err = %v, want an invalid key error", key, err)
		}
		if _, err := st.Stat(ctx, key); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat(%q): err = %v, want an invalid key error", key, err)
		}
		if _, err := st.Get(ctx, key); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q): err = %v, want an invalid key error", key, err)
		}
		if err := st.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded, want an invalid key error", key)
		}
	}
	objs, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Errorf("List after invalid Puts = %v, want nothing", keys(objs))
	}
}

func (s *suite) string(t *testing.T) {
	st := s.open(t)
	if st.String() == "" {
		t.Error("String() is empty")
	}
}
