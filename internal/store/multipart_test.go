package store_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/store"
)

func TestCheckParts(t *testing.T) {
	const ps = 100
	p := func(n int, size int64) store.Part {
		return store.Part{Number: n, ETag: fmt.Sprintf(`"e%d"`, n), Size: size}
	}
	many := make([]store.Part, store.MaxParts+1)
	for i := range many {
		many[i] = p(i+1, ps)
	}
	for _, tc := range []struct {
		name  string
		parts []store.Part
		want  string // "" for valid
	}{
		{"one full", []store.Part{p(1, ps)}, ""},
		{"one short", []store.Part{p(1, 1)}, ""},
		{"one empty", []store.Part{p(1, 0)}, ""},
		{"equal then short", []store.Part{p(1, ps), p(2, ps), p(3, 7)}, ""},
		{"all full", []store.Part{p(1, ps), p(2, ps)}, ""},
		{"max parts", many[:store.MaxParts], ""},
		{"none", nil, "no parts"},
		{"too many", many, "more than 10000"},
		{"unequal", []store.Part{p(1, ps), p(2, ps-1), p(3, 7)}, "R2 rejects unequal parts"},
		{"last larger", []store.Part{p(1, ps), p(2, ps+1)}, "must have 1..100"},
		{"empty last", []store.Part{p(1, ps), p(2, 0)}, "must have 1..100"},
		{"gap", []store.Part{p(1, ps), p(3, 7)}, "numbered 3"},
		{"from 0", []store.Part{p(0, ps)}, "numbered 0"},
		{"no ETag", []store.Part{{Number: 1, Size: ps}}, "no ETag"},
	} {
		err := store.CheckParts(tc.parts, ps)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestMultipartETag(t *testing.T) {
	a, b := md5.Sum([]byte("a")), md5.Sum([]byte("b"))
	whole := md5.Sum(append(a[:], b[:]...))
	parts := []store.Part{{Number: 1, ETag: `"` + hex.EncodeToString(a[:]) + `"`}, {Number: 2, ETag: hex.EncodeToString(b[:])}}
	got, ok := store.MultipartETag(parts)
	if want := `"` + hex.EncodeToString(whole[:]) + `-2"`; !ok || got != want {
		t.Errorf("MultipartETag = %s, %v; want %s", got, ok, want)
	}
	if _, ok := store.MultipartETag([]store.Part{{Number: 1, ETag: "crc32c-0badf00d"}}); ok {
		t.Error("a part ETag that is not an MD5 gave a multipart ETag")
	}
}
