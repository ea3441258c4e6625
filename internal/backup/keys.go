package backup

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/d1backup/d1backup/internal/codec"
)

// AgeExtension ends the key of an encrypted dump.
const AgeExtension = ".age"

// sqlExtension starts every dump key's extension; the codec's follows.
const sqlExtension = ".sql"

var (
	safeBookmark = regexp.MustCompile(`^[0-9A-Za-z-]{1,128}$`)
	databaseUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// DumpKey is where the dump of database id at bookmark is stored. The key
// depends only on the export, so a rerun of the same export lands on the same
// key; bookmarks sort in time order, so a database's backups list oldest first.
func DumpKey(databaseID, bookmark, compression string, encrypted bool) (string, error) {
	c, err := codec.Lookup(compression)
	if err != nil {
		return "", &ConfigError{Msg: err.Error()}
	}
	if !safeBookmark.MatchString(bookmark) {
		return "", &ConfigError{Msg: fmt.Sprintf("bookmark %q has unexpected characters", bookmark)}
	}
	ext := sqlExtension + c.Ext
	if encrypted {
		ext += AgeExtension
	}
	return BookmarkPrefix(databaseID, bookmark) + ext, nil
}

// DatabasePrefix is the key prefix of all backups of one database.
func DatabasePrefix(databaseID string) string { return databaseID + "/" }

// BookmarkPrefix is the key prefix of the backup of one export, whatever its
// compression.
func BookmarkPrefix(databaseID, bookmark string) string {
	return DatabasePrefix(databaseID) + bookmark
}

// Key is a key of d1backup's own grammar, parsed:
// <database uuid>/<bookmark>.sql<codec ext>[.age][.manifest.json|.checkpoint].
type Key struct {
	DatabaseID  string
	Bookmark    string
	Compression string
	Encrypted   bool
	// Manifest is true for a manifest's key and Checkpoint for the
	// checkpoint of an unfinished store (see CheckpointKey); Dump is then
	// the key of the dump they describe. Dump is the key itself for a dump.
	Manifest   bool
	Checkpoint bool
	Dump       string
}

// ParseKey parses key (relative to the store's root) in d1backup's key
// grammar; ok is false for any other key, which d1backup never touches.
func ParseKey(key string) (k Key, ok bool) {
	dump, isManifest := strings.CutSuffix(key, ManifestSuffix)
	dump, isCheckpoint := strings.CutSuffix(dump, CheckpointSuffix)
	if isManifest && isCheckpoint {
		return Key{}, false
	}
	id, name, found := strings.Cut(dump, "/")
	if !found || !databaseUUID.MatchString(id) {
		return Key{}, false
	}
	bookmark, ext, found := strings.Cut(name, sqlExtension)
	if !found || !safeBookmark.MatchString(bookmark) {
		return Key{}, false
	}
	ext, encrypted := strings.CutSuffix(ext, AgeExtension)
	c, known := codec.ByExt(ext)
	if !known {
		return Key{}, false
	}
	return Key{DatabaseID: id, Bookmark: bookmark, Compression: c.Name, Encrypted: encrypted, Manifest: isManifest, Checkpoint: isCheckpoint, Dump: dump}, true
}
