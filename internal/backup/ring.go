package backup

import (
	"crypto/sha256"
	"encoding/hex"
)

// ring keeps the last overlapMax bytes of the SQL read so far, so that a
// checkpoint can record the hash of the bytes just before its offset.
type ring struct {
	buf  [overlapMax]byte
	pos  int   // where the next byte goes
	seen int64 // bytes written in all
}

func (r *ring) Write(p []byte) (int, error) {
	n := len(p)
	r.seen += int64(n)
	if len(p) >= len(r.buf) {
		copy(r.buf[:], p[len(p)-len(r.buf):])
		r.pos = 0
		return n, nil
	}
	k := copy(r.buf[r.pos:], p)
	if k < len(p) {
		copy(r.buf[:], p[k:])
	}
	r.pos = (r.pos + len(p)) % len(r.buf)
	return n, nil
}

// sum is the length and SHA-256 of the last min(seen, overlapMax) bytes.
func (r *ring) sum() (int64, string) {
	n := min(r.seen, int64(len(r.buf)))
	h := sha256.New()
	start := (r.pos - int(n) + len(r.buf)) % len(r.buf)
	if start+int(n) <= len(r.buf) {
		h.Write(r.buf[start : start+int(n)])
	} else {
		h.Write(r.buf[start:])
		h.Write(r.buf[:r.pos])
	}
	return n, hex.EncodeToString(h.Sum(nil))
}
