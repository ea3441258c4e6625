// Package codec is the registry of the compressions a dump can be stored
// with. A codec names itself, the extension its dumps' keys end in after
// ".sql", the Content-Type they are stored with, and how to write and read
// its stream. Adding a compression is one Register call (or one entry in
// builtin); keys, configuration checks, the store step and restore all read
// this registry.
package codec

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Codec is one compression.
type Codec struct {
	// Name is what settings and manifests call it ("gzip").
	Name string
	// Ext follows ".sql" in a dump's key ("" for none, ".gz" for gzip).
	Ext string
	// ContentType is the stored object's Content-Type.
	ContentType string
	// NewWriter compresses into w. Close ends the stream (a gzip member, a
	// zstd frame) and flushes, but does not close w, so a resumed upload can
	// start another stream behind it.
	NewWriter func(w io.Writer) (io.WriteCloser, error)
	// NewReader decompresses r, which may hold several streams one after
	// another (an upload resumed across invocations writes one per
	// invocation): it reads them all, as gzip -d and zstd -d do.
	NewReader func(r io.Reader) (io.ReadCloser, error)
}

var (
	mu       sync.RWMutex
	registry = map[string]*Codec{}
	order    []string
)

func init() {
	for _, c := range builtin() {
		Register(c)
	}
}

// Register adds a codec. It panics on a duplicate name or extension or a
// codec with missing parts: registration happens at start-up, so a mistake
// is a programming error.
func Register(c Codec) {
	mu.Lock()
	defer mu.Unlock()
	switch {
	case c.Name == "" || strings.ContainsAny(c.Name, " ,/"):
		panic(fmt.Sprintf("codec: bad name %q", c.Name))
	case c.Ext != "" && (!strings.HasPrefix(c.Ext, ".") || strings.ContainsAny(c.Ext, "/ ")):
		panic(fmt.Sprintf("codec %s: extension %q must start with a dot", c.Name, c.Ext))
	case c.NewWriter == nil || c.NewReader == nil || c.ContentType == "":
		panic(fmt.Sprintf("codec %s: NewWriter, NewReader and ContentType are required", c.Name))
	case registry[c.Name] != nil:
		panic(fmt.Sprintf("codec %s: registered twice", c.Name))
	}
	for _, o := range registry {
		if o.Ext == c.Ext {
			panic(fmt.Sprintf("codec %s: extension %q already belongs to %s", c.Name, c.Ext, o.Name))
		}
	}
	registry[c.Name] = &c
	order = append(order, c.Name)
}

// Names lists the registered codecs in registration order.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	return slices.Clone(order)
}

// UnknownError names a compression no codec is registered for.
type UnknownError struct{ Name string }

func (e *UnknownError) Error() string {
	return fmt.Sprintf("compression %q: must be one of %s", e.Name, strings.Join(Names(), ", "))
}

// Lookup returns the codec named name.
func Lookup(name string) (*Codec, error) {
	mu.RLock()
	c := registry[name]
	mu.RUnlock()
	if c == nil {
		return nil, &UnknownError{Name: name}
	}
	return c, nil
}

// ByExt returns the codec whose extension is ext ("" is none's).
func ByExt(ext string) (*Codec, bool) {
	mu.RLock()
	defer mu.RUnlock()
	for _, c := range registry {
		if c.Ext == ext {
			return c, true
		}
	}
	return nil, false
}
