package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/dest"
	"github.com/d1backup/d1backup/internal/restore"
	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/local"
)

// refHelp says how verify and restore name a backup.
const refHelp = `A backup is named by any of:
  3fa85f64                   its ID as 'd1backup list' shows it (a unique prefix
                             of 4 or more digits will do)
  shop@latest                the newest good backup of a database (name or UUID)
  shop@3fa85f64              a backup of that database, by ID
  <uuid>/<bookmark>.sql.gz   its key in --dest (its manifest's key works too)
  r2://<bucket>/<key>        a key in another bucket
  ./copy/<bookmark>.sql.gz   a local file, with its .manifest.json beside it`

var idRe = regexp.MustCompile(`^[0-9a-f]{4,8}$`)

// openSource finds the backup ref names (see refHelp).
func openSource(ctx context.Context, cfg config.Config, ref, destination string) (restore.Source, error) {
	switch {
	case ref == "":
		return restore.Source{}, usagef("no backup given")
	case strings.Contains(ref, "://"):
		return openURL(cfg, ref)
	case isFile(ref):
		abs, err := filepath.Abs(ref)
		if err != nil {
			return restore.Source{}, err
		}
		st, err := local.New(filepath.Dir(abs))
		if err != nil {
			return restore.Source{}, err
		}
		return restore.Source{Store: st, Key: filepath.Base(abs)}, nil
	}
	st, err := cfg.OpenDest(destination, http.DefaultClient)
	if err != nil {
		return restore.Source{}, err
	}
	var key string
	switch db, which, at := strings.Cut(ref, "@"); {
	case at:
		key, err = resolveAt(ctx, cfg, st, db, which)
	case idRe.MatchString(ref):
		key, err = resolveID(ctx, st, ref, "")
	default:
		key = strings.TrimPrefix(ref, "/")
		if _, ok := backup.ParseKey(key); !ok && !strings.Contains(key, "/") {
			err = usagef("%q is not a backup: give an ID from 'd1backup list', <database>@latest, a key, r2://<bucket>/<key> or a file", ref)
		}
	}
	if err != nil {
		return restore.Source{}, err
	}
	return restore.Source{Store: st, Key: key}, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// openURL opens r2://bucket/key: the store's root is the bucket.
func openURL(cfg config.Config, ref string) (restore.Source, error) {
	l, err := dest.Parse(ref)
	if err != nil || l.Prefix == "" {
		return restore.Source{}, usagef("%q: use r2://<bucket>/<key>, an ID, a key or a file", dest.Redact(ref))
	}
	key := l.Prefix
	l.Prefix = ""
	if err := cfg.RequireR2(); err != nil {
		return restore.Source{}, err
	}
	st, err := dest.OpenLocation(l, cfg.DestOptions(http.DefaultClient))
	if err != nil {
		return restore.Source{}, err
	}
	return restore.Source{Store: st, Key: key}, nil
}

// resolveID finds the one backup whose ID starts with id (in database
// databaseID when not empty).
func resolveID(ctx context.Context, st store.Store, id, databaseID string) (string, error) {
	prefix := ""
	if databaseID != "" {
		prefix = backup.DatabasePrefix(databaseID)
	}
	shelves, err := backup.Catalog(ctx, st, prefix)
	if err != nil {
		return "", err
	}
	var found []backup.Entry
	for _, s := range shelves {
		for _, e := range s.Backups {
			if strings.HasPrefix(e.ID, id) {
				found = append(found, e)
			}
		}
	}
	switch {
	case len(found) == 0:
		return "", fmt.Errorf("no backup with ID %s in %s; run 'd1backup list' for the IDs", id, clean(st.String()))
	case len(found) > 1:
		var keys []string
		for _, e := range found {
			keys = append(keys, e.ID+" ("+clean(e.Key.Dump)+")")
		}
		return "", usagef("ID %s is ambiguous: %s; give more digits", id, strings.Join(keys, ", "))
	case found[0].Manifest == nil:
		return "", fmt.Errorf("backup %s (%s) has no manifest: it is an unfinished backup and cannot be checked", found[0].ID, clean(found[0].Key.Dump))
	}
	return found[0].Key.Dump, nil
}

// resolveAt finds <database>@latest or <database>@<id>.
func resolveAt(ctx context.Context, cfg config.Config, st store.Store, db, which string) (string, error) {
	if db == "" || which == "" || (which != "latest" && !idRe.MatchString(which)) {
		return "", usagef("%q: use <database>@latest or <database>@<ID>", db+"@"+which)
	}
	// Status reads each database's newest manifests: its name, and its
	// newest good backup.
	statuses, err := backup.Status(ctx, st, backup.StatusOptions{Now: time.Now(), StaleAfter: time.Duration(1<<63 - 1), Concurrency: cfg.Concurrency})
	if err != nil {
		return "", err
	}
	var match []backup.DatabaseStatus
	for _, s := range statuses {
		if s.DatabaseID == strings.ToLower(db) || s.DatabaseName == db {
			match = append(match, s)
		}
	}
	switch {
	case len(match) == 0:
		return "", fmt.Errorf("no backups of a database %q in %s; run 'd1backup list' to see the backups there", clean(db), clean(st.String()))
	case len(match) > 1:
		var ids []string
		for _, s := range match {
			ids = append(ids, s.DatabaseID)
		}
		return "", usagef("several databases named %q have backups (%s): use the UUID", clean(db), strings.Join(ids, ", "))
	case which != "latest":
		return resolveID(ctx, st, which, match[0].DatabaseID)
	case match[0].LastGood == nil:
		return "", fmt.Errorf("database %q has no good backup in %s: %s", clean(db), clean(st.String()), clean(match[0].Reason))
	}
	return match[0].LastGood.Key, nil
}
