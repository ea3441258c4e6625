package dest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/dest"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    dest.Location
		wantErr string
	}{
		{"backups", dest.Location{Path: "backups"}, ""},
		{"/var/backups/d1", dest.Location{Path: "/var/backups/d1"}, ""},
		{"r2://bucket", dest.Location{Scheme: "r2", Bucket: "bucket"}, ""},
		{"r2://bucket/", dest.Location{Scheme: "r2", Bucket: "bucket"}, ""},
		{"r2://bucket/prod/d1/", dest.Location{Scheme: "r2", Bucket: "bucket", Prefix: "prod/d1"}, ""},
		{"s3://bucket/p", dest.Location{Scheme: "s3", Bucket: "bucket", Prefix: "p"}, ""},
		{"ftp://x", dest.Location{}, `unknown scheme "ftp"`},
		{"r2://", dest.Location{}, "no bucket"},
		{"r2://key:secret@bucket/p", dest.Location{}, "credentials"},
		{"r2://bucket/../x", dest.Location{}, `".." segment`},
		{"r2://bucket/a//b", dest.Location{}, "empty path segment"},
		{"", dest.Location{}, "empty"},
	} {
		got, err := dest.Parse(tt.in)
		if tt.wantErr != "" {
			var ue *dest.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) = %v, want a UsageError containing %q", tt.in, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "key:secret") {
				t.Errorf("error leaks the credentials: %v", err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// A destination is one Register call: here a scheme that keeps backups in a
// folder named by the "bucket", to show the seam.
func TestRegisterScheme(t *testing.T) {
	root := t.TempDir()
	dest.Register(dest.Scheme{Name: "testdir", Usage: "testdir://<name>", Open: func(l dest.Location, _ dest.Options) (store.Store, error) {
		return local.New(root + "/" + l.Bucket)
	}})
	st, err := dest.Open("testdir://here/ignored", dest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.String(), root+"/here"; got != want {
		t.Errorf("store %s, want %s", got, want)
	}
	if !strings.Contains(strings.Join(dest.Usages(), " "), "testdir://<name>") {
		t.Errorf("usages %v lack the new scheme", dest.Usages())
	}
}
