package r2_test

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/d1backup/d1backup/internal/store"
)

// zeros is n bytes from nowhere: the test's body costs no memory.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// The uploader buffers Concurrency+1 parts plus the first one, whatever the
// body's length; what else it allocates per request is small garbage. Not
// parallel, so other tests' allocations do not count.
func TestMemoryBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not representative under the race detector")
	}
	s, _ := open(t, nil) // Concurrency 3, 5 MiB parts
	const size = 30 * partSize
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := s.Put(context.Background(), "big", &zeros{size}, store.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("uploading %d MiB allocated %d MiB", size>>20, alloc>>20)
	if limit := uint64(10 * partSize); alloc > limit {
		t.Errorf("uploading %d MiB allocated %d MiB, want at most %d MiB", size>>20, alloc>>20, limit>>20)
	}
}
