// Package seal encrypts short secrets (signed dump URLs) that must pass
// through Step Functions state, where execution history would show them in
// the clear. Only holders of the credentials secret can open them.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

const prefix = "sealed:v1:"

// Sealer seals and opens strings with AES-256-GCM.
type Sealer struct{ aead cipher.AEAD }

// New derives the key from secret material (the API token and R2 secret),
// so every Lambda that reads the credentials secret derives the same key and
// nothing else needs distributing.
func New(material ...string) (*Sealer, error) {
	joined := strings.Join(material, "\x00")
	if len(joined) < 16 {
		return nil, errors.New("seal: key material is too short")
	}
	key, err := hkdf.Key(sha256.New, []byte(joined), nil, "d1backup sealed signed URL v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plain.
func (s *Sealer) Seal(plain string) string {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	out := s.aead.Seal(nonce, nonce, []byte(plain), nil)
	return prefix + base64.RawURLEncoding.EncodeToString(out)
}

// ErrOpen means a sealed value was damaged or sealed with other credentials.
var ErrOpen = errors.New("seal: cannot open sealed value: it was damaged or sealed with other credentials")

// Open decrypts a value made by Seal.
func (s *Sealer) Open(sealed string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sealed, prefix))
	if err != nil || !strings.HasPrefix(sealed, prefix) || len(raw) < s.aead.NonceSize() {
		return "", ErrOpen
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}
