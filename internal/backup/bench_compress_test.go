package backup

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"io"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// benchDump is 64 MiB of the emulator's synthetic dump, the text every
// benchmark of the store step moves.
func benchDump(b *testing.B) []byte {
	b.Helper()
	emu, err := d1emu.New(d1emu.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	db, err := emu.AddSyntheticDatabase("bench", 64<<20)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := emu.WriteDump(context.Background(), db.UUID, &buf); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// What compress stores must read back with the standard readers: gzip's
// parallel blocks are one gzip member for compress/gzip of the standard
// library (and for gzip -d, which scripts/bench runs on the stored object).
func TestCompressReadsBackWithStandardReaders(t *testing.T) {
	emu, err := d1emu.New(d1emu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	// Several gzip blocks and a short last one.
	db, err := emu.AddSyntheticDatabase("roundtrip", 5*gzipBlockSize+12345)
	if err != nil {
		t.Fatal(err)
	}
	var dump bytes.Buffer
	if _, err := emu.WriteDump(context.Background(), db.UUID, &dump); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		compression string
		open        func(io.Reader) (io.Reader, error)
	}{
		{CompressionGzip, func(r io.Reader) (io.Reader, error) {
			zr, err := stdgzip.NewReader(r)
			if err == nil {
				zr.Multistream(false) // exactly one member
			}
			return zr, err
		}},
		{CompressionZstd, func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) }},
	} {
		t.Run(tc.compression, func(t *testing.T) {
			var stored bytes.Buffer
			if err := compress(&stored, bytes.NewReader(dump.Bytes()), tc.compression); err != nil {
				t.Fatal(err)
			}
			zr, err := tc.open(&stored)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, dump.Bytes()) {
				t.Fatalf("read back %d bytes, want the %d bytes of the dump", len(got), dump.Len())
			}
			if stored.Len() != 0 {
				t.Fatalf("%d bytes after the compressed stream", stored.Len())
			}
		})
	}
}

// BenchmarkCompress measures compress (what the store step runs) and the
// alternatives it was chosen from, on one CPU-bound stream with no upload:
//
//	go test -run '^$' -bench Compress -cpu 1,2 ./internal/backup
//
// "ratio" is stored bytes per SQL byte.
func BenchmarkCompress(b *testing.B) {
	dump := benchDump(b)
	type variant struct {
		name string
		fn   func(w io.Writer, r io.Reader) error
	}
	copyThrough := func(zw io.WriteCloser, r io.Reader) error {
		if _, err := io.Copy(zw, r); err != nil {
			return err
		}
		return zw.Close()
	}
	variants := []variant{
		{"compress/gzip", func(w io.Writer, r io.Reader) error { return compress(w, r, CompressionGzip) }},
		{"compress/zstd", func(w io.Writer, r io.Reader) error { return compress(w, r, CompressionZstd) }},
	}
	for _, level := range []int{gzip.BestSpeed, 3, gzip.DefaultCompression} {
		variants = append(variants, variant{"klauspost-gzip/level-" + strconv.Itoa(level), func(w io.Writer, r io.Reader) error {
			zw, _ := gzip.NewWriterLevel(w, level)
			return copyThrough(zw, r)
		}})
	}
	for _, level := range []int{gzip.BestSpeed, 3, gzip.DefaultCompression} {
		for _, block := range []int{256 << 10, 1 << 20} {
			variants = append(variants, variant{"pgzip/level-" + strconv.Itoa(level) + "/block-" + strconv.Itoa(block>>10) + "KiB", func(w io.Writer, r io.Reader) error {
				zw, _ := pgzip.NewWriterLevel(w, level)
				if err := zw.SetConcurrency(block, 4); err != nil {
					return err
				}
				return copyThrough(zw, r)
			}})
		}
	}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		variants = append(variants, variant{"zstd/" + level.String(), func(w io.Writer, r io.Reader) error {
			zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(level))
			if err != nil {
				return err
			}
			return copyThrough(zw, r)
		}})
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(dump)))
			var out countWriter
			cpu0 := cpuTime()
			for b.Loop() {
				out = 0
				if err := v.fn(&out, bytes.NewReader(dump)); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time, unlike wall time, hardly depends on what else the
			// machine runs: MB per CPU-second is the speed on a core of one's own.
			b.ReportMetric(float64(len(dump))*float64(b.N)/1e6/(cpuTime()-cpu0).Seconds(), "MB/cpu-s")
			b.ReportMetric(float64(out)/float64(len(dump)), "ratio")
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
