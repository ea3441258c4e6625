package d1

import (
	"context"
	"regexp"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"
)

// bookmarkShape is what a bookmark may hold: it becomes part of object keys.
var bookmarkShape = regexp.MustCompile(`^[0-9A-Za-z-]{1,128}$`)

// Bookmark returns the database's current Time Travel bookmark (GET
// .../time_travel/bookmark without a timestamp): the state an export
// starting now would have. Read before and after a multi-request read, it
// proves whether anything was written in between. Export bookmarks are
// Time Travel bookmarks too.
func (c *Client) Bookmark(ctx context.Context, databaseID string) (string, error) {
	const op = "read time travel bookmark"
	var params cfd1.DatabaseTimeTravelGetBookmarkParams
	params.AccountID.Value, params.AccountID.Present = c.cfg.AccountID, true
	res, err := c.db.TimeTravel.GetBookmark(ctx, databaseID, params)
	if err != nil {
		return "", c.classify(ctx, op, databaseID, err)
	}
	if !bookmarkShape.MatchString(res.Bookmark) {
		return "", &BadAnswerError{Op: op, Database: databaseID, Msg: "the bookmark is empty or has unexpected characters"}
	}
	return res.Bookmark, nil
}
