package store

import (
	"fmt"
	"strings"
)

// CheckKey reports whether key is acceptable to every backend: slash-separated,
// relative, with no empty, "." or ".." segments. Backends share one rule so a
// key that works against a folder also works against a bucket and back, and
// so a key can never climb out of a folder or a bucket prefix.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("invalid key %q: empty", key)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("invalid key %q: must be relative (no leading slash)", key)
	case strings.ContainsRune(key, 0):
		return fmt.Errorf("invalid key %q: contains a NUL byte", key)
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("invalid key %q: empty path segment", key)
		case ".", "..":
			return fmt.Errorf("invalid key %q: %q segment", key, seg)
		}
	}
	return nil
}
