package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/d1backup/d1backup/internal/store"
)

// PreflightPrefix is where Preflight writes its probe: outside the key
// grammar of backups, so retention never counts or touches it.
const PreflightPrefix = ".d1backup/preflight-"

// Preflight proves the destination can take a backup before D1 is asked for
// an export (which blocks the database): it writes a small object under the
// destination's root, reads its size back and deletes it. A wrong bucket,
// missing credentials or a read-only folder fail here, classified as for any
// store failure (StoreFailedError, or StoreUnavailableError when a retry may
// help).
func Preflight(ctx context.Context, st store.Store) error {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return &InternalError{Err: err}
	}
	key := PreflightPrefix + hex.EncodeToString(b[:])
	const probe = "d1backup preflight: this object proves the destination takes writes; it is deleted at once\n"
	if _, err := st.Put(ctx, key, strings.NewReader(probe), store.PutOptions{ContentType: "text/plain", Size: int64(len(probe))}); err != nil {
		return storeError(fmt.Sprintf("preflight: write a test object to %s", st), err)
	}
	obj, statErr := st.Stat(ctx, key)
	delErr := st.Delete(ctx, key)
	switch {
	case statErr != nil:
		return storeError(fmt.Sprintf("preflight: read back the test object in %s", st), statErr)
	case obj.Size != int64(len(probe)):
		return &StoreFailedError{Op: "preflight in " + st.String(), Err: fmt.Errorf("wrote %d bytes, the destination reports %d", len(probe), obj.Size)}
	case delErr != nil:
		return storeError(fmt.Sprintf("preflight: delete the test object %s in %s (retention needs deletes)", key, st), delErr)
	}
	if _, err := st.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		return &StoreFailedError{Op: "preflight in " + st.String(), Err: fmt.Errorf("the test object %s is still there after a delete (%v)", key, err)}
	}
	return nil
}
