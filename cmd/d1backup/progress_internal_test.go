package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time               { return c.t }
func (c *fakeClock) add(d time.Duration)          { c.t = c.t.Add(d) }
func (c *fakeClock) at(d time.Duration) time.Time { return c.t.Add(d) }

func TestRateMeter(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	var m rateMeter
	m.add(c.now(), 0)
	// 1 MiB every 100 ms: no rate until the samples span a second.
	for i := 1; i <= 10; i++ {
		c.add(100 * time.Millisecond)
		m.add(c.now(), int64(i)<<20)
		if _, ok := m.perSecond(); ok && i < 10 {
			t.Fatalf("a rate after %d ms", i*100)
		}
	}
	// Sub-sample writes add nothing.
	m.add(c.at(time.Millisecond), 11<<20)
	if got, ok := m.perSecond(); !ok || got < 9.9*(1<<20) || got > 10.1*(1<<20) {
		t.Errorf("rate %.0f (%v), want 10 MiB/s", got, ok)
	}
	// Then 20 s at 1 MiB/s: the window forgets the fast start.
	for i := 1; i <= 200; i++ {
		c.add(100 * time.Millisecond)
		m.add(c.now(), 10<<20+int64(i)*(1<<20)/10)
	}
	if got, ok := m.perSecond(); !ok || got < 0.99*(1<<20) || got > 1.01*(1<<20) {
		t.Errorf("rate after slowing down %.0f, want 1 MiB/s", got)
	}
	if n := len(m.samples); n > int(rateWindow/sampleEvery)+2 {
		t.Errorf("%d samples kept, want at most a window's", n)
	}
}

func TestProgressLines(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	var out bytes.Buffer
	p := newProgress(&out, "shop", false, 0, c.now)
	p.onExport(backup.Export{DatabaseName: "shop", Status: backup.StatusActive})
	c.add(5 * time.Second)
	p.onExport(backup.Export{DatabaseName: "shop", Status: backup.StatusActive, Polls: 1})
	p.tick() // 5 s after the last line: quiet
	c.add(5 * time.Second)
	p.onExport(backup.Export{DatabaseName: "shop", Status: backup.StatusActive, Polls: 2})
	p.tick()
	c.add(2 * time.Second)
	p.onExport(backup.Export{DatabaseName: "shop", Status: backup.StatusComplete, Polls: 3})
	for i := 1; i <= 100; i++ {
		c.add(100 * time.Millisecond)
		p.onBytes(int64(i)<<20, 200<<20)
	}
	p.tick()
	p.onExport(backup.Export{DatabaseName: "shop", Status: backup.StatusActive, Restarts: 1})
	want := []string{
		"shop: exporting; D1 answers no queries to shop until the export completes",
		"shop: export running for 10.0s, 2 polls; the database answers no queries until it completes",
		"shop: export complete after 12.0s, 3 polls; D1 serves the database again; storing the dump",
		"shop: storing the dump: 100.0 MiB of 200.0 MiB (50%), 10.0 MiB/s",
		"shop: the export stopped; started a new one (restart 1); D1 answers no queries to shop until the export completes",
	}
	if got := strings.Split(strings.TrimRight(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines\n got %q\nwant %q", got, want)
	}
}

func TestProgressLive(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	var out bytes.Buffer
	p := newProgress(&out, strings.Repeat("long-name-", 10), true, 60, c.now)
	p.onExport(backup.Export{Status: backup.StatusActive})
	c.add(3 * time.Second)
	out.Reset()
	p.tick()
	line := strings.TrimPrefix(out.String(), "\r\033[K")
	if !strings.HasPrefix(line, "  exporting long-name-") || len([]rune(line)) > 59 || strings.Contains(line, "\n") {
		t.Errorf("live line %q: want one line within 59 columns", line)
	}
	// A log line clears the live line and redraws it below.
	out.Reset()
	p.Write([]byte("level=WARN msg=retrying\n")) //nolint:errcheck
	if got := out.String(); !strings.HasPrefix(got, "\r\033[Klevel=WARN msg=retrying\n\r\033[K  exporting") {
		t.Errorf("log through the live line: %q", got)
	}
	p.finish()
	if !strings.HasSuffix(out.String(), "\r\033[K") {
		t.Errorf("finish leaves the live line: %q", out.String())
	}
}

func TestClean(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"shop", "shop"},
		{"café ü", "café ü"},
		{"a\x1b[31mb", `"a\x1b[31mb"`},
		{"rtl\u202eoverride", `"rtl\u202eoverride"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{"tab\there", `"tab\there"`},
	} {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestHumanFormats(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, "30s"}, {12 * time.Minute, "12m"}, {5*time.Hour + 12*time.Minute, "5h12m"},
		{30 * time.Hour, "30h"}, {3*24*time.Hour + 4*time.Hour, "3d4h"}, {40 * 24 * time.Hour, "40d"},
	} {
		if got := ago(tt.d); got != tt.want {
			t.Errorf("ago(%s) = %s, want %s", tt.d, got, tt.want)
		}
	}
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{12 * time.Millisecond, "12ms"}, {1500 * time.Millisecond, "1.5s"}, {125 * time.Second, "2m05s"}, {62 * time.Minute, "1h02m"},
	} {
		if got := elapsed(tt.d); got != tt.want {
			t.Errorf("elapsed(%s) = %s, want %s", tt.d, got, tt.want)
		}
	}
	if got := count(1, "backup", "backups") + ", " + count(2, "backup", "backups"); got != "1 backup, 2 backups" {
		t.Errorf("count: %s", got)
	}
}
