package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	}
}

// RecordVerification writes a verification result into the manifest under
// key, replacing the manifest whole (one atomic PUT).
func RecordVerification(ctx context.Context, st store.Store, key string, v *Verification) error {
	m, err := ReadManifest(ctx, st, key)
	if err != nil {
		return &StoreUnavailableError{Op: "read manifest " + key, Err: err}
	}
	m.Verification = v
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return &InternalError{Err: err}
	}
	data = append(data, '\n')
	if _, err := st.Put(ctx, key, bytes.NewReader(data), store.PutOptions{ContentType: "application/json", Size: int64(len(data)), Replace: true}); err != nil {
		return &StoreUnavailableError{Op: "update manifest " + key, Err: err}
	}
	return nil
}

// ReadManifest loads the manifest under key (the manifest's own key).
func ReadManifest(ctx context.Context, st store.Store, key string) (*Manifest, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: not a d1backup manifest: %w", key, err)
	}
	if m.Format != ManifestFormat || m.Key == "" {
		return nil, fmt.Errorf("read manifest %s: unsupported manifest (format %d)", key, m.Format)
	}
	return &m, nil
}

// ListManifests returns the manifests of the backups under prefix (for
// example a database UUID followed by "/"), oldest bookmark first.
func ListManifests(ctx context.Context, st store.Store, prefix string) ([]*Manifest, error) {
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list backups in %s: %w", st, err)
	}
	var out []*Manifest
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ManifestSuffix) {
			continue
		}
		m, err := ReadManifest(ctx, st, o.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
