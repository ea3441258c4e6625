package backup

import (
	"fmt"
	"regexp"
)

// Compression names.
const (
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// AgeExtension ends the key of an encrypted dump.
const AgeExtension = ".age"

// Extension returns the dump file extension for a compression.
func Extension(compression string) (string, error) {
	switch compression {
	case CompressionGzip:
		return ".sql.gz", nil
	case CompressionZstd:
		return ".sql.zst", nil
	case CompressionNone:
		return ".sql", nil
	}
	return "", &ConfigError{Msg: fmt.Sprintf("compression %q: must be gzip, zstd or none", compression)}
}

var safeBookmark = regexp.MustCompile(`^[0-9A-Za-z-]{1,128}$`)

// DumpKey is where the dump of database id at bookmark is stored. The key
// depends only on the export, so a rerun of the same export lands on the same
// key; bookmarks sort in time order, so a database's backups list oldest first.
func DumpKey(databaseID, bookmark, compression string, encrypted bool) (string, error) {
	ext, err := Extension(compression)
	if err != nil {
		return "", err
	}
	if !safeBookmark.MatchString(bookmark) {
		return "", &ConfigError{Msg: fmt.Sprintf("bookmark %q has unexpected characters", bookmark)}
	}
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
