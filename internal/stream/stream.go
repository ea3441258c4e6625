// Package stream holds the small readers and writers the data path is
// built from: a digest that counts (every dump is hashed and measured as it
// streams) and a reader that stops when its context ends.
package stream

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"fmt"
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

// MarshalBinary saves the digest's state (the SHA-256 state, which holds
// the count), so that a later process can continue hashing the same stream.
func (d *Digest) MarshalBinary() ([]byte, error) {
	return d.h.(encoding.BinaryMarshaler).MarshalBinary()
}

// ResumeDigest continues a digest saved by MarshalBinary after n bytes.
// The state must say n bytes too.
func ResumeDigest(state []byte, n int64) (*Digest, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("stream: SHA-256 state: %w", err)
	}
	// The state's last 8 bytes are its byte count, big-endian (crypto/sha256's
	// layout since Go 1.11, checked by UnmarshalBinary's length check).
	if len(state) < 8 || int64(binary.BigEndian.Uint64(state[len(state)-8:])) != n {
		return nil, fmt.Errorf("stream: SHA-256 state does not cover %d bytes", n)
	}
	return &Digest{h: h, n: n}, nil
}

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
