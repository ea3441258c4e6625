package r2_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/store"
)

// TestRawPartsOnTheWire: the store step's own multipart calls send what
// R2 takes: no checksum headers or aws-chunked bodies on any request (the
// client's WhenRequired holds for raw UploadPart as for the uploader),
// If-None-Match: * on the completion, and every part's exact length.
func TestRawPartsOnTheWire(t *testing.T) {
	rec, hc := newRecorder(t)
	s, _ := open(t, hc)
	ctx := context.Background()
	const key = "db/raw.sql.gz"
	id, err := s.CreateUpload(ctx, key, store.UploadOptions{ContentType: "application/gzip", PartSize: partSize})
	if err != nil {
		t.Fatal(err)
	}
	bodies := [][]byte{random(t, partSize), random(t, partSize), random(t, 1234)}
	var ps []store.Part
	for i, b := range bodies {
		p, err := s.UploadPart(ctx, key, id, i+1, b)
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(b)
		if got, want := strings.Trim(p.ETag, `"`), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("part %d ETag %s, want the part's MD5 %s", i+1, got, want)
		}
		ps = append(ps, p)
	}
	if _, err := s.CompleteUpload(ctx, key, id, ps); err != nil {
		t.Fatal(err)
	}
	reqs := rec.requests()
	checkNoChecksums(t, reqs)
	if got := fmt.Sprint(parts(t, reqs)); got != fmt.Sprint([]int64{partSize, partSize, 1234}) {
		t.Errorf("part sizes on the wire %s", got)
	}
	completes := 0
	for _, r := range reqs {
		if r.method == http.MethodPost && r.query.Has("uploadId") {
			completes++
			if r.header.Get("If-None-Match") != "*" {
				t.Errorf("CompleteMultipartUpload without If-None-Match: * (%v)", r.header)
			}
		}
	}
	if completes != 1 {
		t.Errorf("%d completions, want 1", completes)
	}
	obj, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := store.MultipartETag(ps); obj.ETag != want {
		t.Errorf("object ETag %s, want the multipart ETag %s computed from its parts", obj.ETag, want)
	}
}

// TestCompleteChecksPartsOnServer: a part list that names sizes or parts
// the server does not hold is refused before the completion (ListParts),
// and part sizes below S3's minimum are refused by R2's rule.
func TestCompleteChecksPartsOnServer(t *testing.T) {
	s, _ := open(t, nil)
	ctx := context.Background()
	const key = "db/check.sql"
	if _, err := s.CreateUpload(ctx, key, store.UploadOptions{PartSize: 1 << 20}); err == nil {
		t.Error("CreateUpload with 1 MiB parts succeeded; S3 refuses parts under 5 MiB at completion")
	}
	id, err := s.CreateUpload(ctx, key, store.UploadOptions{PartSize: partSize})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := s.UploadPart(ctx, key, id, 1, random(t, partSize))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		parts []store.Part
		want  string
	}{
		{"never uploaded", []store.Part{p1, {Number: 2, ETag: p1.ETag, Size: 10}}, "never uploaded"},
		{"size", []store.Part{{Number: 1, ETag: p1.ETag, Size: partSize - 1}}, "not"},
	} {
		_, err := s.CompleteUpload(ctx, key, id, tc.parts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, store.ErrExists) {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	if err := s.AbortUpload(ctx, key, id); err != nil {
		t.Fatal(err)
	}
}
