package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/store"
)

// ManifestSuffix ends the key of the manifest stored beside each dump.
const ManifestSuffix = ".manifest.json"

// ManifestFormat is the manifest layout version.
const ManifestFormat = 1

// Manifest records what a backup holds and how it was made. It is written
// after the dump, so a dump without a manifest is an unfinished backup.
type Manifest struct {
	Format       int    `json:"format"`
	Tool         string `json:"tool"`
	ToolVersion  string `json:"tool_version"`
	DatabaseID   string `json:"database_id"`
	DatabaseName string `json:"database_name"`
	Bookmark     string `json:"bookmark"`
	// Key is the dump's key, relative to the store's root.
	Key string `json:"key"`
	// ExportStartedAt/ExportCompletedAt bracket the export: the database
	// answered no queries in between.
	ExportStartedAt   time.Time `json:"export_started_at"`
	ExportCompletedAt time.Time `json:"export_completed_at"`
	BlockedSeconds    float64   `json:"blocked_seconds"`
	StoredAt          time.Time `json:"stored_at"`
	// SQLBytes/SQLSHA256 describe the SQL dump as D1 produced it;
	// StoredBytes/StoredSHA256 the object as stored (after compression).
	SQLBytes     int64  `json:"sql_bytes"`
	SQLSHA256    string `json:"sql_sha256"`
	StoredBytes  int64  `json:"stored_bytes"`
	StoredSHA256 string `json:"stored_sha256"`
	Compression  string `json:"compression"`
	// D1Filename is the name D1 gave the dump.
	D1Filename string `json:"d1_filename,omitempty"`
	// Encryption is set when the stored bytes are encrypted.
	Encryption *Encryption `json:"encryption,omitempty"`
	// Verification is the result of loading the dump into a scratch
	// database, when the backup was verified.
	Verification *Verification `json:"verification,omitempty"`
	// Method is how the dump was read: MethodExport (absent from manifests
	// written before there was a choice) or MethodQuery, when Query says
	// how the read went.
	Method string     `json:"method,omitempty"`
	Query  *QueryRead `json:"query,omitempty"`
	// Warnings are what the backup could not hold, one line each.
	Warnings []string `json:"warnings,omitempty"`
}

// Encryption says how a dump was encrypted: with age, to the X25519
// recipients listed, after compression. Only their identities can read it.
type Encryption struct {
	Type       string   `json:"type"`
	Recipients []string `json:"recipients"`
}

// Verification records a restorability check of a backup.
type Verification struct {
	OK         bool             `json:"ok"`
	VerifiedAt time.Time        `json:"verified_at"`
	Tables     map[string]int64 `json:"tables,omitempty"`
	SchemaHash string           `json:"schema_sha256,omitempty"`
	Problems   []string         `json:"problems,omitempty"`
}

// Verified reports whether a verification of the backup succeeded.
func (m *Manifest) Verified() bool { return m.Verification != nil && m.Verification.OK }

// Summary returns the step output for m.
func (m *Manifest) Summary(alreadyExisted bool) Summary {
	return Summary{
		DatabaseID: m.DatabaseID, DatabaseName: m.DatabaseName, Bookmark: m.Bookmark,
		Key: m.Key, ManifestKey: m.Key + ManifestSuffix,
		SQLBytes: m.SQLBytes, SQLSHA256: m.SQLSHA256,
		StoredBytes: m.StoredBytes, StoredSHA256: m.StoredSHA256,
		Compression: m.Compression, Encrypted: m.Encryption != nil, AlreadyExisted: alreadyExisted,
		Method: m.Method, Warnings: m.Warnings, Consistent: m.Query.consistent(),
	}
}

// RecordVerification writes a verification result into the manifest under
// key, replacing the manifest whole (one atomic PUT).
func RecordVerification(ctx context.Context, st store.Store, key string, v *Verification) error {
	m, err := ReadManifest(ctx, st, key)
	if err != nil {
		return manifestError("read manifest "+key, err)
	}
	m.Verification = v
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return &InternalError{Err: err}
	}
	data = append(data, '\n')
	if _, err := st.Put(ctx, key, bytes.NewReader(data), store.PutOptions{ContentType: "application/json", Size: int64(len(data)), Replace: true}); err != nil {
		return storeError("update manifest "+key, err)
	}
	return nil
}

// maxManifestBytes bounds what ReadManifest reads: a manifest is a few KiB.
const maxManifestBytes = 1 << 20

// BadManifestError: the object under a manifest's key was read but is not a
// d1backup manifest (not JSON, another format version, missing fields, or a
// key that does not match where it is stored). It is a property of the
// object, not of the store: retrying does not help.
type BadManifestError struct {
	Key string
	Msg string
}

func (e *BadManifestError) Error() string {
	return fmt.Sprintf("backup: %s is not a d1backup manifest: %s", e.Key, e.Msg)
}

// ReadManifest loads the manifest under key (the manifest's own key). A
// store failure comes back as the store's error (wrapping store.ErrNotFound
// or store.ErrTransient where they apply); an object that is not a manifest
// as a *BadManifestError.
func ReadManifest(ctx context.Context, st store.Store, key string) (*Manifest, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	if len(data) > maxManifestBytes {
		return nil, &BadManifestError{Key: key, Msg: fmt.Sprintf("larger than %d bytes", maxManifestBytes)}
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, &BadManifestError{Key: key, Msg: "not JSON: " + err.Error()}
	}
	if m.Format != ManifestFormat {
		return nil, &BadManifestError{Key: key, Msg: fmt.Sprintf("unsupported format %d (this version reads %d)", m.Format, ManifestFormat)}
	}
	if err := m.check(key); err != nil {
		return nil, &BadManifestError{Key: key, Msg: err.Error()}
	}
	return &m, nil
}

// check holds a manifest to the key it is stored under: it must describe
// the dump beside it, of a database and bookmark in d1backup's key grammar.
func (m *Manifest) check(key string) error {
	if m.Key == "" {
		return fmt.Errorf("no dump key")
	}
	dump, ok := strings.CutSuffix(key, ManifestSuffix)
	if !ok {
		return fmt.Errorf("its key does not end in %s", ManifestSuffix)
	}
	// A manifest may be read from another root than the one it was written
	// under (a local copy of one database's folder): its file name, and its
	// folder where there is one, must still be the dump's.
	if path.Base(m.Key) != path.Base(dump) {
		return fmt.Errorf("it describes %s, not %s", m.Key, dump)
	}
	if dir := path.Dir(dump); dir != "." && path.Base(dir) != m.DatabaseID {
		return fmt.Errorf("it describes database %s but is stored under %s", m.DatabaseID, dir)
	}
	k, ok := ParseKey(m.Key)
	if !ok {
		return fmt.Errorf("its dump key %q is not in d1backup's key grammar", m.Key)
	}
	if k.DatabaseID != m.DatabaseID || k.Bookmark != m.Bookmark || k.Compression != m.Compression || k.Encrypted != (m.Encryption != nil) {
		return fmt.Errorf("its fields (database %s, bookmark %s, %s, encrypted %v) do not match its dump key %s", m.DatabaseID, m.Bookmark, m.Compression, m.Encryption != nil, m.Key)
	}
	if m.SQLBytes < 0 || m.StoredBytes < 0 {
		return fmt.Errorf("negative sizes")
	}
	return nil
}

// manifestError classifies a failure to read a manifest.
func manifestError(op string, err error) error {
	var bad *BadManifestError
	if errors.As(err, &bad) {
		return &IntegrityError{Msg: bad.Error()}
	}
	return storeError(op, err)
}

// Skipped is an object a listing passed over, and why.
type Skipped struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// ListManifests returns the manifests of the backups under prefix (for
// example a database UUID followed by "/"), oldest bookmark first. Objects
// under *.manifest.json that are not d1backup's, or that cannot be read,
// are skipped with the reason (one bad object must not hide every other
// backup); a failure to list at all is an error.
func ListManifests(ctx context.Context, st store.Store, prefix string) ([]*Manifest, []Skipped, error) {
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return nil, nil, storeError("list backups in "+st.String(), err)
	}
	var (
		out     []*Manifest
		skipped []Skipped
	)
	for _, o := range objs {
		k, ok := ParseKey(o.Key)
		if !ok || !k.Manifest {
			if strings.HasSuffix(o.Key, ManifestSuffix) {
				skipped = append(skipped, Skipped{Key: o.Key, Reason: "not in d1backup's key grammar (<database uuid>/<bookmark>.sql...manifest.json)"})
			}
			continue
		}
		m, err := ReadManifest(ctx, st, o.Key)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			skipped = append(skipped, Skipped{Key: o.Key, Reason: err.Error()})
			continue
		}
		out = append(out, m)
	}
	return out, skipped, nil
}
