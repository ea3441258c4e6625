package seal_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/seal"
)

func TestRoundTrip(t *testing.T) {
	s, err := seal.New("token-0123456789", "r2-secret")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://example.r2.cloudflarestorage.com/dump.sql?X-Amz-Signature=abc"
	sealed := s.Seal(url)
	if strings.Contains(sealed, "X-Amz-Signature") || strings.Contains(sealed, "example") {
		t.Fatalf("sealed value shows the URL: %s", sealed)
	}
	got, err := s.Open(sealed)
	if err != nil || got != url {
		t.Fatalf("Open = %q, %v; want %q", got, err, url)
	}
}

func TestOpenRefuses(t *testing.T) {
	a, _ := seal.New("token-0123456789", "r2-secret")
	b, _ := seal.New("other-token-0123456789", "r2-secret")
	sealed := a.Seal("https://x/y")
	// Change one character in the middle: every bit there is significant (the
	// last character of unpadded base64 may carry ignored bits).
	mid := len(sealed) / 2
	flip := byte('A')
	if sealed[mid] == 'A' {
		flip = 'B'
	}
	tampered := sealed[:mid] + string(flip) + sealed[mid+1:]
	for name, in := range map[string]string{
		"other key": sealed, "garbage": "sealed:v1:!!", "plain URL": "https://x/y",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := b.Open(in); !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("Open = %v, want ErrOpen", err)
			}
		})
	}
	if _, err := a.Open(tampered); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("tampered: Open = %v, want ErrOpen", err)
	}
	if _, err := seal.New("short"); err == nil {
		t.Fatal("New accepted short key material")
	}
}
