// Command d1backup backs up Cloudflare D1 databases into R2 or a folder.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
)

const usage = `d1backup backs up Cloudflare D1 databases into Cloudflare R2 or a local folder.

Usage:
  d1backup backup      --database <uuid|name> [--dest <dir>|r2://<bucket>/<prefix>] [--compression gzip|zstd|none]
  d1backup list        [--dest ...] [--database <uuid|name>]
  d1backup verify      <key|r2://<bucket>/<key>|path> [--dest ...] [--identity <file>] [--json]
  d1backup restore     --from <key|r2://<bucket>/<key>|path> (--create <name> | --database <uuid|name> [--force] | --to-sqlite <file>)
  d1backup prune       [--dest ...] [--keep-last N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--dry-run]
  d1backup run         [--state-machine <arn>] [--wait]      start the deployed scheduled run now
  d1backup executions  [--state-machine <arn>] [--limit N]   recent runs, with failures and causes
  d1backup redrive     <execution-arn>                       rerun a failed execution from where it failed
  d1backup version

Configuration comes from the environment (flags override):
  CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_BASE_URL,
  R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, R2_BUCKET, R2_ENDPOINT, D1BACKUP_PREFIX.
Without R2_BUCKET, backups go to ./d1-backups. run/executions/redrive use the
AWS credential chain (AWS_PROFILE, AWS_REGION) and D1BACKUP_STATE_MACHINE_ARN.

Run 'd1backup <command> --help' for a command's flags.
`

// env is the process environment as the commands see it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// terminal is true when stderr is a terminal (progress bars).
	terminal bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, terminal: isTerminal(os.Stderr)}
	os.Exit(run(ctx, os.Args[1:], e))
}

// run executes one command and returns the exit code: 0 success, 1 failure,
// 2 bad usage.
func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "backup":
		err = cmdBackup(ctx, args[1:], e)
	case "list":
		err = cmdList(ctx, args[1:], e)
	case "restore":
		err = cmdRestore(ctx, args[1:], e)
	case "verify":
		err = cmdVerify(ctx, args[1:], e)
	case "prune":
		err = cmdPrune(ctx, args[1:], e)
	case "run":
		err = cmdRun(ctx, args[1:], e)
	case "executions":
		err = cmdExecutions(ctx, args[1:], e)
	case "redrive":
		err = cmdRedrive(ctx, args[1:], e)
	case "step":
		err = cmdStep(ctx, args[1:], e, e.stdin)
	case "version", "--version":
		fmt.Fprintln(e.stdout, "d1backup", version())
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, usage)
	default:
		fmt.Fprintf(e.stderr, "d1backup: unknown command %q; run 'd1backup --help' for the commands\n", args[0])
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errStepFailed):
		return 1
	case errors.As(err, new(usageError)):
		fmt.Fprintf(e.stderr, "d1backup %s: %v\n", args[0], err)
		return 2
	}
	fmt.Fprintf(e.stderr, "d1backup %s: %s\n", args[0], oneLine(err))
	return 1
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// newFlags returns a flag set that prints its usage to e.stdout for --help
// and returns errors instead of exiting.
func newFlags(e env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: d1backup %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string, e env) error {
	_, err := parseN(fs, args, e, 0)
	return err
}

// parseN parses flags followed by exactly n positional arguments.
func parseN(fs *flag.FlagSet, args []string, e env, n int) ([]string, error) {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return nil, flag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > n {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(n))}
	}
	if fs.NArg() < n {
		return nil, usageError{"missing argument; see --help"}
	}
	return fs.Args(), nil
}

func loadConfig(e env) (config.Config, error) {
	return config.FromEnv(e.getenv)
}

func newLogger(e env, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	} else if !e.terminal {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func isUUID(s string) bool { return d1.IsUUID(s) }
