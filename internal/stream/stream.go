// Package stream holds the small readers and writers the data path is
// built from: a digest that counts (every dump is hashed and measured as it
// streams) and a reader that stops when its context ends.
package stream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
)

// Digest is an io.Writer that hashes (SHA-256) and counts what is written
// to it; OnWrite, if set, sees the running count.
type Digest struct {
	h       hash.Hash
	n       int64
	OnWrite func(n int64)
}

// NewDigest returns an empty SHA-256 digest.
func NewDigest() *Digest { return &Digest{h: sha256.New()} }

// Write hashes and counts p; it never fails.
func (d *Digest) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	if d.OnWrite != nil {
		d.OnWrite(d.n)
	}
	return len(p), nil
}

// N is the number of bytes written.
func (d *Digest) N() int64 { return d.n }

// Sum is the SHA-256 of what was written, in lower-case hex.
func (d *Digest) Sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// Hash exposes the running hash (its state can be marshalled).
func (d *Digest) Hash() hash.Hash { return d.h }

// WithContext returns a reader that fails with ctx's error once ctx ends.
func WithContext(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx: ctx, r: r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
