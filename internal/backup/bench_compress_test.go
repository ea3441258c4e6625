package backup

import (
	"bytes"
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
