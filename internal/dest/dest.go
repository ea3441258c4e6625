// Package dest opens backup destinations by name: a folder path, or
// <scheme>://<bucket>/<prefix> for a registered scheme. The schemes are a
// table (restic's location registry is the model): adding a destination is
// one Register call with a function that builds a store.Store from a
// Location and the shared Options.
package dest

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
	"github.com/d1backup/d1backup/internal/store/r2"
)

// Options are what destinations may need; each takes what applies to it.
type Options struct {
	// Endpoint, AccessKeyID and SecretAccessKey reach an S3-compatible
	// service (R2's come from R2_ENDPOINT and the R2 API token).
	Endpoint        string
	AccessKeyID     string
	SecretAccessKey string
	// PartSize and PartConcurrency shape multipart uploads.
	PartSize        int64
	PartConcurrency int
	// HTTPClient carries requests; tests pass one trusting their server.
	HTTPClient *http.Client
}

// Location is a parsed destination.
type Location struct {
	// Scheme is "" for a folder.
	Scheme string
	// Bucket and Prefix for a scheme; Path for a folder.
	Bucket string
	Prefix string
	Path   string
}

// String is the destination as people write it.
func (l Location) String() string {
	if l.Scheme == "" {
		return l.Path
	}
	return l.Scheme + "://" + strings.TrimSuffix(l.Bucket+"/"+l.Prefix, "/")
}

// Scheme is a kind of destination.
type Scheme struct {
	// Name is the URL scheme ("r2").
	Name string
	// Usage shows its form in help ("r2://<bucket>/<prefix>").
	Usage string
	Open  func(l Location, o Options) (store.Store, error)
}

var (
	mu      sync.RWMutex
	schemes = map[string]Scheme{}
)

func init() {
	for _, s := range []Scheme{
		{Name: "r2", Usage: "r2://<bucket>/<prefix>", Open: openS3},
		{Name: "s3", Usage: "s3://<bucket>/<prefix> (any S3-compatible endpoint)", Open: openS3},
	} {
		Register(s)
	}
}

// Register adds a scheme; it panics on a duplicate (a programming error).
func Register(s Scheme) {
	mu.Lock()
	defer mu.Unlock()
	if s.Name == "" || s.Open == nil || schemes[s.Name].Open != nil {
		panic(fmt.Sprintf("dest: bad or duplicate scheme %q", s.Name))
	}
	schemes[s.Name] = s
}

// Usages lists the forms a destination can take, for help texts.
func Usages() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := []string{"<folder>"}
	var names []string
	for n := range schemes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, schemes[n].Usage)
	}
	return out
}

// UsageError is a destination that cannot be parsed.
type UsageError struct {
	Dest string
	Msg  string
}

func (e *UsageError) Error() string {
	return fmt.Sprintf("destination %q: %s; use %s", Redact(e.Dest), e.Msg, strings.Join(Usages(), " or "))
}

// Redact hides credentials written into a destination URL
// (r2://key:secret@bucket), which must never be echoed.
func Redact(dest string) string {
	scheme, rest, ok := strings.Cut(dest, "://")
	if !ok {
		return dest
	}
	host, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(host, "@"); i >= 0 {
		host = "REDACTED@" + host[i+1:]
	}
	if path != "" {
		return scheme + "://" + host + "/" + path
	}
	return scheme + "://" + host
}

// Parse reads a destination: scheme://bucket/prefix, or a folder path.
func Parse(dest string) (Location, error) {
	if dest == "" {
		return Location{}, &UsageError{Dest: dest, Msg: "empty"}
	}
	if !strings.Contains(dest, "://") {
		return Location{Path: dest}, nil
	}
	u, err := url.Parse(dest)
	if err != nil {
		return Location{}, &UsageError{Dest: dest, Msg: "not a URL"}
	}
	mu.RLock()
	_, known := schemes[u.Scheme]
	mu.RUnlock()
	switch {
	case !known:
		return Location{}, &UsageError{Dest: dest, Msg: fmt.Sprintf("unknown scheme %q", u.Scheme)}
	case u.Host == "":
		return Location{}, &UsageError{Dest: dest, Msg: "no bucket"}
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return Location{}, &UsageError{Dest: dest, Msg: "credentials, queries and fragments do not belong in a destination"}
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := store.CheckKey(prefix); err != nil {
			return Location{}, &UsageError{Dest: dest, Msg: err.Error()}
		}
	}
	return Location{Scheme: u.Scheme, Bucket: u.Host, Prefix: prefix}, nil
}

// Open parses dest and opens its store. A folder is not created until
// something is written into it.
func Open(dest string, o Options) (store.Store, error) {
	l, err := Parse(dest)
	if err != nil {
		return nil, err
	}
	return OpenLocation(l, o)
}

// OpenLocation opens a parsed destination.
func OpenLocation(l Location, o Options) (store.Store, error) {
	if l.Scheme == "" {
		return local.New(l.Path)
	}
	mu.RLock()
	s := schemes[l.Scheme]
	mu.RUnlock()
	if s.Open == nil {
		return nil, &UsageError{Dest: l.String(), Msg: fmt.Sprintf("unknown scheme %q", l.Scheme)}
	}
	return s.Open(l, o)
}

func openS3(l Location, o Options) (store.Store, error) {
	return r2.New(r2.Config{
		Endpoint: o.Endpoint, Bucket: l.Bucket, Prefix: l.Prefix,
		AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey,
		PartSize: o.PartSize, Concurrency: o.PartConcurrency, HTTPClient: o.HTTPClient,
	})
}
