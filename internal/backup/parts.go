package backup

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/stream"
)

// partSink receives the stored stream (compressed, maybe encrypted), hashes
// it, cuts it into parts of exactly partSize bytes and uploads each as soon
// as it is full, at most conc at once. The bytes after the last full part
// (the tail) stay in memory: they become the last part at the end, or go
// into a checkpoint. Writes come from one goroutine at a time.
type partSink struct {
	st       store.Store
	mp       store.Multipart
	key      string
	opts     store.UploadOptions
	uploadID string
	digest   *stream.Digest

	ctx    context.Context // ends at the first failed part
	cancel context.CancelCauseFunc
	cur    []byte   // the part being filled; len < partSize between writes
	free   [][]byte // recycled part buffers
	sem    chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	parts   []store.Part // by number-1; zero Number while in flight
	err     error
	created bool // this sink created the upload
}

func newPartSink(ctx context.Context, st store.Store, mp store.Multipart, key string, opts store.UploadOptions, conc int, from *checkpoint, digest *stream.Digest) *partSink {
	ctx, cancel := context.WithCancelCause(ctx)
	s := &partSink{
		st: st, mp: mp, key: key, opts: opts, digest: digest,
		ctx: ctx, cancel: cancel, sem: make(chan struct{}, conc),
		cur: make([]byte, 0, opts.PartSize),
	}
	s.cond = sync.NewCond(&s.mu)
	if from != nil {
		s.uploadID = from.UploadID
		s.parts = append(s.parts, from.Parts...)
		s.cur = append(s.cur, from.tail...)
	}
	return s
}

// Write hashes p and adds it to the current part, uploading parts as they
// fill. It fails once a part upload has failed.
func (s *partSink) Write(p []byte) (int, error) {
	if err := s.failed(); err != nil {
		return 0, err
	}
	s.digest.Write(p)
	n := len(p)
	for len(p) > 0 {
		k := copy(s.cur[len(s.cur):cap(s.cur)], p)
		s.cur, p = s.cur[:len(s.cur)+k], p[k:]
		if int64(len(s.cur)) == s.opts.PartSize {
			if err := s.dispatch(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// window is free room in the current part, at most max bytes, for a
// reader to fill in place; commit(n) then takes the first n bytes of it as
// written.
func (s *partSink) window(max int) []byte {
	return s.cur[len(s.cur):min(cap(s.cur), len(s.cur)+max)]
}

// commit hashes the n bytes read into the window and takes them in.
func (s *partSink) commit(n int) error {
	if err := s.failed(); err != nil {
		return err
	}
	s.digest.Write(s.cur[len(s.cur) : len(s.cur)+n])
	s.cur = s.cur[:len(s.cur)+n]
	if int64(len(s.cur)) == s.opts.PartSize {
		return s.dispatch()
	}
	return nil
}

// dispatch starts the upload of the full current part and takes a new
// buffer, waiting while conc parts are in flight.
func (s *partSink) dispatch() error {
	if s.uploadID == "" {
		id, err := s.mp.CreateUpload(s.ctx, s.key, s.opts)
		if err != nil {
			s.fail(storeError("start the upload of "+s.key, err))
			return s.failed()
		}
		s.uploadID, s.created = id, true
	}
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return s.failed()
	}
	if err := s.failed(); err != nil {
		<-s.sem
		return err
	}
	buf, id := s.cur, s.uploadID
	s.mu.Lock()
	s.parts = append(s.parts, store.Part{})
	n := len(s.parts)
	s.mu.Unlock()
	s.wg.Go(func() {
		defer func() { <-s.sem }()
		part, err := s.mp.UploadPart(s.ctx, s.key, id, n, buf)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.failLocked(storeError(fmt.Sprintf("upload part %d of %s", n, s.key), err))
		} else {
			s.parts[n-1] = part
		}
		s.free = append(s.free, buf[:0])
		s.cond.Broadcast()
	})
	s.mu.Lock()
	if len(s.free) > 0 {
		s.cur, s.free = s.free[len(s.free)-1], s.free[:len(s.free)-1]
	} else {
		s.cur = make([]byte, 0, s.opts.PartSize)
	}
	s.mu.Unlock()
	return nil
}

// fail records the sink's first failure; nothing more is dispatched. Parts
// in flight are left to finish: a request cancelled mid-body may still land
// on the server after the upload is aborted, and bring it back.
func (s *partSink) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

func (s *partSink) failLocked(err error) {
	if s.err == nil {
		s.err = err
		s.cond.Broadcast()
	}
}

// abort fails the sink and cancels the parts in flight, when waiting for
// them is no longer possible.
func (s *partSink) abort(err error) {
	s.fail(err)
	s.cancel(err)
}

func (s *partSink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if err := s.ctx.Err(); err != nil {
		return context.Cause(s.ctx)
	}
	return nil
}

// uploaded waits until parts 1..n are uploaded and returns them, or the
// first failure.
func (s *partSink) uploaded(n int) ([]store.Part, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.err != nil {
			return nil, s.err
		}
		done := true
		for _, p := range s.parts[:n] {
			if p.Number == 0 {
				done = false
				break
			}
		}
		if done {
			return append([]store.Part(nil), s.parts[:n]...), nil
		}
		s.cond.Wait()
	}
}

// cut is the sink's state at a point of the stream: parts dispatched so
// far (maybe still in flight), a copy of the tail and the digest's state.
type sinkCut struct {
	parts  int
	tail   []byte
	stored int64
	state  []byte
}

func (s *partSink) cut() (sinkCut, error) {
	state, err := s.digest.MarshalBinary()
	if err != nil {
		return sinkCut{}, &InternalError{Err: err}
	}
	s.mu.Lock()
	n := len(s.parts)
	s.mu.Unlock()
	return sinkCut{parts: n, tail: append([]byte(nil), s.cur...), stored: s.digest.N(), state: state}, nil
}

// put writes the whole stream as one object: it was shorter than a part,
// so no upload was started. It refuses to overwrite (store.ErrExists).
func (s *partSink) put(ctx context.Context) error {
	_, err := s.st.Put(ctx, s.key, bytes.NewReader(s.cur), store.PutOptions{ContentType: s.opts.ContentType, Size: int64(len(s.cur))})
	return err
}

// flush uploads the tail as the last part and waits for every part.
func (s *partSink) flush() ([]store.Part, error) {
	if len(s.cur) > 0 {
		if err := s.dispatch(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	n := len(s.parts)
	s.mu.Unlock()
	return s.uploaded(n)
}

// stop waits for the parts in flight and releases the sink; it returns the
// first failure.
func (s *partSink) stop() error {
	s.wg.Wait()
	s.cancel(nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
