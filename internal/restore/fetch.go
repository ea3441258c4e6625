// Package restore brings backups back: it fetches a stored dump, proves it is
// the one the manifest describes (SHA-256 of the stored object and of the
// SQL; reading no further than the sizes it records) before anything is
// written anywhere, and then imports it into a D1 database (existing and
// empty, or created for it), loads it into a local SQLite file, or verifies
// it in a scratch SQLite database. Statements are cut by SQLite's own rule
// (split.go) and loaded as data, under an authorizer that refuses whatever
// a D1 dump does not hold (policy.go); rows over D1's statement limit are
// rewritten for it (rewrite.go).
package restore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"filippo.io/age"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

// D1's import limits.
const (
	MaxImportBytes    = 5 << 30
	MaxStatementBytes = 100 << 10
)

// Source is a backup in a store: Key is the dump's key or its manifest's
// key (the dump's key + backup.ManifestSuffix).
type Source struct {
	Store store.Store
	Key   string
}

// Keys returns the dump's key and the manifest's key.
func (s Source) Keys() (dumpKey, manifestKey string) {
	if k, ok := strings.CutSuffix(s.Key, backup.ManifestSuffix); ok {
		return k, s.Key
	}
	return s.Key, s.Key + backup.ManifestSuffix
}

// Dump is a backup fetched and checked: the SQL sits in a temporary file
// whose hashes match the manifest. Close removes the file.
type Dump struct {
	Manifest    *backup.Manifest
	Key         string
	ManifestKey string
	// Path is the SQL file.
	Path string
	// Size, SHA256 and MD5 describe the SQL. The MD5 is D1's import etag.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	MD5    string `json:"md5"`
	// Statements counts the SQL statements.
	Statements int64
	// Oversized counts the statements over MaxStatementBytes, which
	// restoring into D1 rewrites (see rewrite.go).
	Oversized int64
	// Limits lists what would make D1 refuse the import (over 5 GB,
	// transaction statements); empty when none.
	Limits []string
}

// Close removes the SQL file.
func (d *Dump) Close() error {
	if d == nil || d.Path == "" {
		return nil
	}
	err := os.Remove(d.Path)
	d.Path = ""
	return err
}

// CheckImportLimits returns a *LimitError when D1 would refuse the dump.
func (d *Dump) CheckImportLimits() error {
	if len(d.Limits) == 0 {
		return nil
	}
	return &LimitError{Key: d.Key, Problems: d.Limits}
}

// Fetch reads the manifest, streams the stored object into a temporary file
// (in tempDir, os.TempDir() if empty) while hashing it, decompressing it and
// scanning its statements, and checks every size and hash against the
// manifest. On any mismatch it returns an *IntegrityError and leaves no file.
func Fetch(ctx context.Context, src Source, opts Options) (*Dump, error) {
	dumpKey, manifestKey := src.Keys()
	m, err := backup.ReadManifest(ctx, src.Store, manifestKey)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, &NotFoundError{Key: manifestKey, Store: src.Store.String()}
		}
		// A manifest that was read but is not one is an integrity failure;
		// the rest are the store's.
		var bad *backup.BadManifestError
		if errors.As(err, &bad) {
			return nil, &IntegrityError{Key: dumpKey, Check: "manifest", Msg: bad.Error()}
		}
		return nil, fmt.Errorf("restore: %w", err)
	}
	if path.Base(m.Key) != path.Base(dumpKey) {
		return nil, &IntegrityError{Key: dumpKey, Check: "manifest", Msg: fmt.Sprintf("the manifest %s describes %s, not %s", manifestKey, m.Key, dumpKey)}
	}
	d, err := fetch(ctx, src.Store, dumpKey, m, opts)
	if err != nil {
		return nil, err
	}
	d.ManifestKey = manifestKey
	return d, nil
}

func fetch(ctx context.Context, st store.Store, key string, m *backup.Manifest, opts Options) (_ *Dump, err error) {
	if m.Encryption != nil && len(opts.Identities) == 0 {
		return nil, &TargetError{Msg: fmt.Sprintf("backup %s is encrypted with %s to %s: give the age identity (private key) file with --identity", key, m.Encryption.Type, strings.Join(m.Encryption.Recipients, ", "))}
	}
	rc, err := st.Get(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, &NotFoundError{Key: key, Store: st.String()}
		}
		return nil, fmt.Errorf("restore: read %s: %w", key, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(opts.TempDir, "d1backup-restore-*.sql")
	if err != nil {
		return nil, fmt.Errorf("restore: temporary file: %w", err)
	}
	d := &Dump{Manifest: m, Key: key, Path: f.Name()}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(d.Path)
		}
	}()

	if m.StoredBytes < 0 || m.SQLBytes < 0 {
		return nil, &IntegrityError{Key: key, Check: "manifest", Msg: fmt.Sprintf("the manifest records %d stored and %d SQL bytes", m.StoredBytes, m.SQLBytes)}
	}
	stored := stream.NewDigest()
	// Reads stop at one byte past what the manifest records: a larger
	// object, or one that decompresses to more SQL, is refused there and
	// then, not read (and written to disk) to its end.
	capped := &capReader{r: stream.WithContext(ctx, rc), left: m.StoredBytes}
	raw := io.TeeReader(capped, stored)
	compressed := raw
	if m.Encryption != nil {
		dr, err := age.Decrypt(raw, opts.Identities...)
		if err != nil {
			io.Copy(io.Discard, raw) //nolint:errcheck
			if capped.over {
				return nil, tooLarge(key, m, true)
			}
			if stored.N() == m.StoredBytes && stored.Sum() == m.StoredSHA256 {
				return nil, &TargetError{Msg: fmt.Sprintf("cannot decrypt backup %s: %v (is it the identity of one of %s?)", key, err, strings.Join(m.Encryption.Recipients, ", "))}
			}
			return nil, corrupt(key, stored, m, err)
		}
		compressed = dr
	}
	c, err := codec.Lookup(m.Compression)
	if err != nil {
		return nil, &IntegrityError{Key: key, Check: "manifest", Msg: fmt.Sprintf("the manifest names compression %q, which this version cannot read", m.Compression)}
	}
	zr, err := c.NewReader(compressed)
	if err != nil {
		return nil, corrupt(key, stored, m, fmt.Errorf("not %s data: %w", c.Name, err))
	}
	defer zr.Close()
	var sqlR io.Reader = zr
	sqlSHA, sqlMD5 := stream.NewDigest(), md5.New()
	sqlCapped := &capReader{r: sqlR, left: m.SQLBytes}
	// The statements are scanned in the same pass, from what the file
	// receives.
	pr, pw := io.Pipe()
	scanned := make(chan error, 1)
	go func() {
		err := scan(pr, d)
		io.Copy(io.Discard, pr) //nolint:errcheck // drain after a scan error
		scanned <- err
	}()
	_, copyErr := io.Copy(io.MultiWriter(f, sqlSHA, sqlMD5, pw), sqlCapped)
	pw.CloseWithError(copyErr)
	splitErr := <-scanned
	switch {
	case capped.over, sqlCapped.over:
		return nil, tooLarge(key, m, capped.over)
	case copyErr != nil:
		if ctx.Err() != nil {
			return nil, fmt.Errorf("restore: %w", ctx.Err())
		}
		// Drain the rest so the stored hash covers the whole object.
		io.Copy(io.Discard, raw) //nolint:errcheck
		if capped.over {
			return nil, tooLarge(key, m, true)
		}
		return nil, corrupt(key, stored, m, copyErr)
	}
	// Trailing bytes after the compressed stream still count as stored.
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return nil, fmt.Errorf("restore: read %s: %w", key, err)
	}
	if capped.over {
		return nil, tooLarge(key, m, true)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("restore: temporary file: %w", err)
	}
	d.Size, d.SHA256, d.MD5 = sqlSHA.N(), sqlSHA.Sum(), hex.EncodeToString(sqlMD5.Sum(nil))

	switch {
	case stored.N() != m.StoredBytes || stored.Sum() != m.StoredSHA256:
		return nil, &IntegrityError{Key: key, Check: "stored_sha256", Msg: fmt.Sprintf("stored object is %d bytes with SHA-256 %s; the manifest says %d bytes with %s: the object (or its manifest) was changed or damaged after the backup", stored.N(), stored.Sum(), m.StoredBytes, m.StoredSHA256)}
	case d.Size != m.SQLBytes || d.SHA256 != m.SQLSHA256:
		return nil, &IntegrityError{Key: key, Check: "sql_sha256", Msg: fmt.Sprintf("SQL is %d bytes with SHA-256 %s; the manifest says %d bytes with %s", d.Size, d.SHA256, m.SQLBytes, m.SQLSHA256)}
	case splitErr != nil:
		return nil, &IntegrityError{Key: key, Check: "sql", Msg: "SQL cannot be read as statements: " + splitErr.Error()}
	}
	if d.Size > MaxImportBytes {
		d.Limits = append([]string{fmt.Sprintf("the SQL is %d bytes; D1 imports at most %d (5 GB)", d.Size, int64(MaxImportBytes))}, d.Limits...)
	}
	return d, nil
}

// tooLarge: the object (stored), or the SQL it decompresses to, is larger
// than its manifest says.
func tooLarge(key string, m *backup.Manifest, stored bool) error {
	what := fmt.Sprintf("the stored object is larger than the manifest's %d bytes", m.StoredBytes)
	if !stored {
		what = fmt.Sprintf("the stored object decompresses to more than the manifest's %d SQL bytes", m.SQLBytes)
	}
	return &IntegrityError{Key: key, Check: "stored_sha256", Msg: what + "; it was not read further: the object (or its manifest) was changed or damaged after the backup"}
}

// capReader reads at most left bytes from r, then reports one more
// byte's worth as errOverCap (and over).
type capReader struct {
	r    io.Reader
	left int64
	over bool
}

var errOverCap = errors.New("more bytes than the manifest records")

func (c *capReader) Read(p []byte) (int, error) {
	if c.over {
		return 0, errOverCap
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if int64(n) > c.left {
		c.over = true
		return int(c.left), errOverCap
	}
	c.left -= int64(n)
	return n, err
}

// corrupt explains a decompression failure: against the manifest's stored
// hash when the object no longer matches it.
func corrupt(key string, stored *stream.Digest, m *backup.Manifest, err error) error {
	return &IntegrityError{Key: key, Check: "stored_sha256", Msg: fmt.Sprintf("cannot decompress the stored %s object (%v); the manifest expects %d stored bytes with SHA-256 %s: the object (or its manifest) was changed or damaged after the backup", m.Compression, err, m.StoredBytes, m.StoredSHA256)}
}
