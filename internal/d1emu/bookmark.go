package d1emu

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// TimeTravelRetention is how far back the bookmark endpoint answers (D1's
// paid plan).
const TimeTravelRetention = 30 * 24 * time.Hour

// versionAt is one step of a database's write history.
type versionAt struct {
	at       time.Time
	version  uint64
	bookmark string // "" until computed
}

// bookmark formats a D1-style bookmark: the write counter leads, so
// bookmarks sort in time order; the content hash fills the rest, so an
// unchanged database gives the same bookmark again.
func bookmark(version uint64, content []byte) string {
	return fmt.Sprintf("%08x-%08x-%08x-%032x", uint32(version),
		binary.BigEndian.Uint32(content[0:4]), binary.BigEndian.Uint32(content[4:8]), content[8:24])
}

// advance records a write: the version moves on and the content hash is
// stale. Call with d.mu held.
func (s *Server) advance(d *database) {
	now := s.now()
	d.version++
	d.contentHash = nil
	d.history = append(d.history, versionAt{at: now, version: d.version})
	// Keep the last step older than the retention: it answers for the
	// oldest timestamps still in range.
	cut := 0
	for cut+1 < len(d.history) && !d.history[cut+1].at.After(now.Add(-TimeTravelRetention)) {
		cut++
	}
	d.history = d.history[cut:]
}

// settle turns a content hash (of a dump, taken after reading data version
// dv) into the current bookmark. A change made behind the emulator's back
// (a direct write to DBPath) shows as another hash or data version and
// advances the version. Call with d.mu held.
func (s *Server) settle(d *database, content []byte, dv int64) string {
	h := sha256.New()
	h.Write([]byte(d.UUID))
	h.Write(content)
	sum := h.Sum(nil)
	if d.contentHash != nil && (!hmac.Equal(d.contentHash, sum) || dv != d.dataVersion) {
		s.advance(d)
	}
	d.contentHash, d.dataVersion = sum, dv
	bm := bookmark(d.version, sum)
	if last := &d.history[len(d.history)-1]; last.bookmark == "" {
		last.bookmark = bm
	}
	return bm
}

// dataVersion reads PRAGMA data_version, which changes when another
// connection commits to the file.
func dataVersion(ctx context.Context, d *database) (int64, error) {
	if d.path == "" {
		return 0, nil
	}
	var v int64
	err := d.db.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v)
	return v, err
}

// syntheticContent stands in for the content hash of a synthetic database.
func syntheticContent(d *database) []byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "synthetic\x00%s\x00%d", d.Name, d.synthSize))
	return sum[:]
}

// bookmarkNow is d's current bookmark; it dumps the database only when it
// may have changed since the last time. Call with d.mu held.
func (s *Server) bookmarkNow(ctx context.Context, d *database) (string, error) {
	if d.path == "" {
		return s.settle(d, syntheticContent(d), 0), nil
	}
	if d.db == nil {
		return "", errors.New("server closed")
	}
	dv, err := dataVersion(ctx, d)
	if err != nil {
		return "", err
	}
	if d.contentHash != nil && dv == d.dataVersion {
		return bookmark(d.version, d.contentHash), nil
	}
	_, sum, err := dumpSQLite(ctx, d.db, io.Discard, dumpOptions{})
	var vt *virtualTableError
	if errors.As(err, &vt) {
		sum, err = s.schemaHash(ctx, d)
	}
	if err != nil {
		return "", err
	}
	return s.settle(d, sum, dv), nil
}

// errBookmarkTime is a timestamp the bookmark endpoint cannot answer for.
var errBookmarkTime = errors.New("no bookmark at that time")

// bookmarkAt is d's bookmark at time t: that of the last write at or
// before t. A version no request ever saw the bookmark of gets one derived
// from the database and the version. Call with d.mu held.
func (s *Server) bookmarkAt(ctx context.Context, d *database, t time.Time) (string, error) {
	now, err := s.bookmarkNow(ctx, d)
	if err != nil {
		return "", err
	}
	switch {
	case t.After(s.now()):
		return "", fmt.Errorf("%w: %s is in the future", errBookmarkTime, t.UTC().Format(time.RFC3339))
	case t.Before(d.CreatedAt) || t.Before(s.now().Add(-TimeTravelRetention)):
		return "", fmt.Errorf("%w: %s is before the earliest restore point", errBookmarkTime, t.UTC().Format(time.RFC3339))
	}
	i := len(d.history) - 1
	for i > 0 && d.history[i].at.After(t) {
		i--
	}
	if i == len(d.history)-1 {
		return now, nil
	}
	step := &d.history[i]
	if step.bookmark == "" {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00unobserved\x00%d", d.UUID, step.version))
		step.bookmark = bookmark(step.version, sum[:])
	}
	return step.bookmark, nil
}

type bookmarkResult struct {
	Bookmark string `json:"bookmark"`
}

func (s *Server) handleBookmark(c *call) {
	d := s.lookup(c.dbID, false)
	if d == nil {
		s.notFound(c)
		return
	}
	var at time.Time
	if v := c.r.URL.Query().Get("timestamp"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.writeError(c, http.StatusBadRequest, 7400, fmt.Sprintf("Invalid timestamp %q: want RFC 3339, e.g. 2025-01-02T15:04:05Z", v))
			return
		}
		at = t
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		bm  string
		err error
	)
	if at.IsZero() {
		bm, err = s.bookmarkNow(c.r.Context(), d)
	} else {
		bm, err = s.bookmarkAt(c.r.Context(), d, at)
	}
	switch {
	case errors.Is(err, errBookmarkTime):
		s.writeError(c, http.StatusBadRequest, 7400, err.Error())
	case err != nil:
		s.log.Error("bookmark", "uuid", d.UUID, "err", err)
		s.writeError(c, http.StatusInternalServerError, 7500, MessageInternalError)
	default:
		s.writeResult(c, http.StatusOK, bookmarkResult{Bookmark: bm}, nil)
	}
}
