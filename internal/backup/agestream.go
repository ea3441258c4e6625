package backup

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// ageStream writes an age file (age-encryption.org/v1) that can be
// suspended in one process and continued in another, which age's own
// writer cannot. age.Encrypt writes the header and the payload nonce; the
// file key reaches us through the recipients' Wrap (keyCapture), and the
// payload is age's STREAM: 64 KiB chunks sealed with ChaCha20-Poly1305
// under HKDF-SHA256(file key, nonce, "payload"), the chunk counter in the
// nonce and a flag on the last chunk. Readers see one ordinary age file
// (the tests decrypt it with age.Decrypt).
//
// Its state (the payload key, the chunk counter and the plaintext of the
// unfinished chunk) is a secret while the upload runs: checkpoints keep it
// sealed with the credentials-derived key, and it is deleted with the
// checkpoint once the backup is complete, after which the writer again
// holds nothing that opens the backup.
type ageStream struct {
	aead  cipher.AEAD
	key   []byte
	dst   io.Writer
	buf   []byte // plaintext of the chunk being filled
	chunk uint64 // chunks already written
}

const (
	ageChunkSize  = 64 << 10
	ageNonceSize  = 16
	ageFileKeyLen = 16
)

// newAgeStream writes an age header for recipients into dst and returns the
// payload writer.
func newAgeStream(dst io.Writer, recipients []age.Recipient) (*ageStream, error) {
	var fileKey []byte
	wrapped := make([]age.Recipient, len(recipients))
	for i, r := range recipients {
		wrapped[i] = &keyCapture{r: r, key: &fileKey}
	}
	var hdr bytes.Buffer
	if _, err := age.Encrypt(&hdr, wrapped...); err != nil {
		return nil, &InternalError{Err: fmt.Errorf("age: %w", err)}
	}
	if len(fileKey) != ageFileKeyLen || hdr.Len() < ageNonceSize {
		return nil, &InternalError{Err: errors.New("age: no file key reached the recipients")}
	}
	// The header is followed by the payload nonce; age's writer, which we
	// drop, has written nothing else.
	nonce := hdr.Bytes()[hdr.Len()-ageNonceSize:]
	key, err := hkdf.Key(sha256.New, fileKey, nonce, "payload", chacha20poly1305.KeySize)
	if err != nil {
		return nil, &InternalError{Err: err}
	}
	w, err := resumeAgeStream(dst, key, 0, nil)
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(hdr.Bytes()); err != nil {
		return nil, err
	}
	return w, nil
}

func resumeAgeStream(dst io.Writer, key []byte, chunk uint64, pending []byte) (*ageStream, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, &InternalError{Err: err}
	}
	if len(pending) > ageChunkSize {
		return nil, &InternalError{Err: errors.New("age: unfinished chunk larger than a chunk")}
	}
	buf := make([]byte, 0, ageChunkSize+chacha20poly1305.Overhead)
	return &ageStream{aead: aead, key: key, dst: dst, buf: append(buf, pending...), chunk: chunk}, nil
}

// Write encrypts p. A full chunk is sealed only once more bytes follow it,
// since the last chunk carries a flag.
func (w *ageStream) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(w.buf) == ageChunkSize {
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
		k := min(len(p), ageChunkSize-len(w.buf))
		w.buf, p = append(w.buf, p[:k]...), p[k:]
	}
	return n, nil
}

// Close seals the last chunk. It does not close dst.
func (w *ageStream) Close() error { return w.flush(true) }

func (w *ageStream) flush(last bool) error {
	var nonce [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(nonce[3:11], w.chunk)
	if last {
		nonce[11] = 1
	}
	sealed := w.aead.Seal(w.buf[:0], nonce[:], w.buf, nil)
	w.chunk++
	w.buf = w.buf[:0]
	_, err := w.dst.Write(sealed)
	return err
}

// state is what continues the stream elsewhere: payload key, chunk counter
// and the unfinished chunk's plaintext. It is secret.
func (w *ageStream) state() []byte {
	b := make([]byte, 0, len(w.key)+8+len(w.buf))
	b = append(b, w.key...)
	b = binary.BigEndian.AppendUint64(b, w.chunk)
	return append(b, w.buf...)
}

// resumeAgeState continues a stream from state.
func resumeAgeState(dst io.Writer, state []byte) (*ageStream, error) {
	if len(state) < chacha20poly1305.KeySize+8 {
		return nil, errors.New("age stream state is too short")
	}
	key := state[:chacha20poly1305.KeySize]
	chunk := binary.BigEndian.Uint64(state[chacha20poly1305.KeySize:])
	return resumeAgeStream(dst, bytes.Clone(key), chunk, state[chacha20poly1305.KeySize+8:])
}

// keyCapture passes Wrap on to a recipient and keeps the file key age asks
// it to wrap.
type keyCapture struct {
	r   age.Recipient
	key *[]byte
}

var _ age.RecipientWithLabels = (*keyCapture)(nil)

func (k *keyCapture) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	*k.key = bytes.Clone(fileKey)
	return k.r.Wrap(fileKey)
}

func (k *keyCapture) WrapWithLabels(fileKey []byte) ([]*age.Stanza, []string, error) {
	if rl, ok := k.r.(age.RecipientWithLabels); ok {
		*k.key = bytes.Clone(fileKey)
		return rl.WrapWithLabels(fileKey)
	}
	s, err := k.Wrap(fileKey)
	return s, nil, err
}
