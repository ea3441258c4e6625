package codec_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"errors"
	"io"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/d1emu"
)

// compress is what the store step does with a codec.
func compress(w io.Writer, r io.Reader, name string) error {
	c, err := codec.Lookup(name)
	if err != nil {
		return err
	}
	zw, err := c.NewWriter(w)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{zw}, struct{ io.Reader }{r}, make([]byte, 256<<10)); err != nil {
		return err
	}
	return zw.Close()
}

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

// What a codec writes must read back with the standard readers: gzip's
// parallel blocks are one gzip member for compress/gzip of the standard
// library (and for gzip -d, which scripts/bench runs on the stored object).
func TestCompressReadsBackWithStandardReaders(t *testing.T) {
	emu, err := d1emu.New(d1emu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	// Several gzip blocks and a short last one.
	db, err := emu.AddSyntheticDatabase("roundtrip", 5*(256<<10)+12345)
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
		{codec.Gzip, func(r io.Reader) (io.Reader, error) {
			zr, err := stdgzip.NewReader(r)
			if err == nil {
				zr.Multistream(false) // exactly one member
			}
			return zr, err
		}},
		{codec.Zstd, func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) }},
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
//	go test -run '^$' -bench Compress -cpu 1,2 ./internal/codec
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
		{"compress/gzip", func(w io.Writer, r io.Reader) error { return compress(w, r, codec.Gzip) }},
		{"compress/zstd", func(w io.Writer, r io.Reader) error { return compress(w, r, codec.Zstd) }},
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

// Streams written one after another (an upload resumed across invocations
// starts a new one each time) read back as one, through the registry's
// readers.
func TestConcatenatedStreams(t *testing.T) {
	parts := [][]byte{bytes.Repeat([]byte("INSERT INTO t VALUES(1);\n"), 5000), []byte("x"), {}, bytes.Repeat([]byte{0, 1, 2}, 100000)}
	var want []byte
	for _, p := range parts {
		want = append(want, p...)
	}
	for _, name := range codec.Names() {
		t.Run(name, func(t *testing.T) {
			c, _ := codec.Lookup(name)
			var stored bytes.Buffer
			for _, p := range parts {
				if err := compress(&stored, bytes.NewReader(p), name); err != nil {
					t.Fatal(err)
				}
			}
			zr, err := c.NewReader(&stored)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

func TestLookup(t *testing.T) {
	for _, tt := range []struct {
		name, ext, contentType string
	}{
		{"gzip", ".gz", "application/gzip"}, {"zstd", ".zst", "application/zstd"}, {"none", "", "application/sql"},
	} {
		c, err := codec.Lookup(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if c.Ext != tt.ext || c.ContentType != tt.contentType {
			t.Errorf("%s: ext %q type %q, want %q %q", tt.name, c.Ext, c.ContentType, tt.ext, tt.contentType)
		}
		if got, ok := codec.ByExt(tt.ext); !ok || got.Name != tt.name {
			t.Errorf("ByExt(%q) = %v, %v; want %s", tt.ext, got, ok, tt.name)
		}
	}
	_, err := codec.Lookup("lz4")
	var unknown *codec.UnknownError
	if !errors.As(err, &unknown) || err.Error() != `compression "lz4": must be one of gzip, zstd, none` {
		t.Errorf("Lookup(lz4) = %v, want an UnknownError listing the codecs", err)
	}
}

func TestRegisterRefusesClashes(t *testing.T) {
	none, _ := codec.Lookup("none")
	for _, c := range []codec.Codec{
		{Name: "gzip", Ext: ".gz2", ContentType: "x", NewWriter: none.NewWriter, NewReader: none.NewReader},
		{Name: "gz2", Ext: ".gz", ContentType: "x", NewWriter: none.NewWriter, NewReader: none.NewReader},
		{Name: "bad", Ext: "nodot", ContentType: "x", NewWriter: none.NewWriter, NewReader: none.NewReader},
		{Name: "nowriter", Ext: ".nw", ContentType: "x", NewReader: none.NewReader},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%s, %q) did not panic", c.Name, c.Ext)
				}
			}()
			codec.Register(c)
		}()
	}
}
