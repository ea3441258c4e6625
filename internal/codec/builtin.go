package codec

import (
	"bufio"
	"io"
	"runtime"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Names of the built-in codecs.
const (
	Gzip = "gzip"
	Zstd = "zstd"
	None = "none"
)

// Default is the compression used when none is configured.
const Default = Gzip

func builtin() []Codec {
	return []Codec{
		{Name: Gzip, Ext: ".gz", ContentType: "application/gzip", NewWriter: newGzipWriter, NewReader: newGzipReader},
		{Name: Zstd, Ext: ".zst", ContentType: "application/zstd", NewWriter: newZstdWriter, NewReader: newZstdReader},
		{Name: None, Ext: "", ContentType: "application/sql", NewWriter: newNoneWriter, NewReader: newNoneReader},
	}
}

// writeBuffer sits between a compressor and the stored stream. With the 32
// KiB of a plain io.Copy every compressed flush was a separate hand-over
// through the pipe to the uploader; 256 KiB cut the store step's CPU time
// with gzip by about a fifth (scripts/bench).
const writeBuffer = 256 << 10

// gzip is compressed in parallel blocks (klauspost/pgzip: one gzip member,
// each block primed with the previous block's last 32 KiB, so any gzip
// reader reads it and the output is within 0.5% of single-threaded gzip's).
// On one core, compression capped the store step at about 0.8x the speed of
// compression none; two 256 KiB blocks in flight lift it to line rate for
// about 13% more CPU and a few MiB of memory. Larger blocks only cost memory.
// The level stays the default (6): level 1 is a third cheaper in CPU but
// stores 21% more bytes, kept for the whole retention period.
const (
	gzipBlockSize = 256 << 10
	gzipMaxBlocks = 4
)

func newGzipWriter(w io.Writer) (io.WriteCloser, error) {
	bw := bufio.NewWriterSize(w, writeBuffer)
	gw := pgzip.NewWriter(bw)
	if err := gw.SetConcurrency(gzipBlockSize, min(runtime.GOMAXPROCS(0), gzipMaxBlocks)); err != nil {
		return nil, err
	}
	return &flushCloser{WriteCloser: gw, bw: bw}, nil
}

func newGzipReader(r io.Reader) (io.ReadCloser, error) {
	// Multistream is the default: every member is read.
	return gzip.NewReader(r)
}

// zstd keeps its defaults (level 3, asynchronous block encoding): half of
// gzip's output at about the same CPU.
func newZstdWriter(w io.Writer) (io.WriteCloser, error) {
	bw := bufio.NewWriterSize(w, writeBuffer)
	zw, err := zstd.NewWriter(bw)
	if err != nil {
		return nil, err
	}
	return &flushCloser{WriteCloser: zw, bw: bw}, nil
}

// zstdMaxWindow bounds the window a frame may ask the reader for: the
// writer uses 8 MiB windows, and a hostile frame asking for 512 MiB would
// make the reader allocate it.
const zstdMaxWindow = 64 << 20

func newZstdReader(r io.Reader) (io.ReadCloser, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
	if err != nil {
		return nil, err
	}
	return zr.IOReadCloser(), nil
}

func newNoneWriter(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil }
func newNoneReader(r io.Reader) (io.ReadCloser, error)  { return io.NopCloser(r), nil }

// flushCloser closes the compressor, then flushes the buffer behind it.
type flushCloser struct {
	io.WriteCloser
	bw *bufio.Writer
}

func (f *flushCloser) Close() error {
	if err := f.WriteCloser.Close(); err != nil {
		return err
	}
	return f.bw.Flush()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
