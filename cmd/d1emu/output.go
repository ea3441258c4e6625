package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/d1backup/d1backup/internal/d1emu"
)

// envVar is one variable the emulator hands to the shell.
type envVar struct{ key, value string }

func envVars(s *d1emu.Server, addr string) []envVar {
	return []envVar{
		{"CLOUDFLARE_API_BASE_URL", "http://" + addr + "/client/v4"},
		{"CLOUDFLARE_ACCOUNT_ID", s.AccountID()},
		{"CLOUDFLARE_API_TOKEN", s.Token()},
		{"D1EMU_PID", strconv.Itoa(os.Getpid())},
	}
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// shellQuote makes v one word for sh, both in eval and in a sourced file.
func shellQuote(v string) string {
	if plainWord.MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// writeEnvFile writes KEY=value lines, whole or not at all, so a script
// waiting for the file never reads half of it.
func writeEnvFile(path string, vars []envVar) error {
	var b strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&b, "%s=%s\n", v.key, shellQuote(v.value))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".d1emu-env-*")
	if err != nil {
		return fmt.Errorf("d1emu: env file: %w", err)
	}
	_, err = tmp.WriteString(b.String())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("d1emu: env file: %w", err)
	}
	return nil
}

// announce prints the export lines, then (unless quiet) a line per
// database with the SHA-256 of the dump its export would produce, then
// "# ready"; it closes stdout when it can, so $(d1emu ... &) returns while
// the emulator keeps serving.
func announce(ctx context.Context, stdout io.Writer, s *d1emu.Server, vars []envVar, databases bool) error {
	var b strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&b, "export %s=%s\n", v.key, shellQuote(v.value))
	}
	if databases {
		for _, db := range s.Databases() {
			h := sha256.New()
			n, err := s.WriteDump(ctx, db.UUID, h)
			if err != nil {
				fmt.Fprintf(&b, "# database %s %s dump unavailable: %v\n", db.Name, db.UUID, err)
				continue
			}
			fmt.Fprintf(&b, "# database %s %s dump sha256 %x (%d bytes)\n", db.Name, db.UUID, h.Sum(nil), n)
		}
	}
	b.WriteString("# ready\n")
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		return fmt.Errorf("d1emu: stdout: %w", err)
	}
	if c, ok := stdout.(io.Closer); ok {
		c.Close()
	}
	return nil
}
