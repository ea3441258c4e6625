package stream_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/d1backup/d1backup/internal/stream"
)

// A digest saved mid-stream and resumed elsewhere ends where one digest of
// the whole stream does; a state that does not cover the count, or is not
// a state, is refused.
func TestResumeDigest(t *testing.T) {
	d := stream.NewDigest()
	d.Write([]byte("hello "))
	state, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r, err := stream.ResumeDigest(state, 6)
	if err != nil {
		t.Fatal(err)
	}
	r.Write([]byte("world"))
	want := sha256.Sum256([]byte("hello world"))
	if got := r.Sum(); got != hex.EncodeToString(want[:]) || r.N() != 11 {
		t.Errorf("resumed digest = %s after %d bytes, want %x after 11", got, r.N(), want)
	}
	for _, tc := range []struct {
		name  string
		state []byte
		n     int64
	}{
		{"wrong count", state, 7},
		{"not a state", []byte("sha\x03 but too short"), 6},
		{"empty", nil, 0},
	} {
		if _, err := stream.ResumeDigest(tc.state, tc.n); err == nil {
			t.Errorf("%s: resumed, want an error", tc.name)
		}
	}
}
