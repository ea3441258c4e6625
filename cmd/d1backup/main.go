// Command d1backup backs up Cloudflare D1 databases into R2 or a folder,
// lists, verifies, restores and prunes those backups, and drives the
// deployed workflow. Commands and flags are spf13/cobra's (GNU-style flags,
// generated help, shell completion); the flags that are settings come from
// the settings table in internal/config, so the CLI, the Lambda functions
// and the CDK stack read the same names, defaults and ranges.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/dest"
)

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

// run executes one command line and returns the exit code: 0 success, 1
// failure, 2 a usage mistake (unknown command or flag, a bad flag value, a
// missing argument).
func run(ctx context.Context, args []string, e env) int {
	root := newRoot(e)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	name := "d1backup"
	if cmd != nil && cmd != root {
		name = cmd.CommandPath()
	}
	var (
		ue usageError
		de *dest.UsageError
	)
	switch {
	case errors.Is(err, errStepFailed):
		return 1
	case errors.As(err, &ue), errors.As(err, &de), isCobraUsage(err):
		fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err))
		return 2
	}
	fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err))
	return 1
}

// isCobraUsage recognises the usage errors cobra makes itself (it has no
// error types for them).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

const rootLong = `d1backup backs up Cloudflare D1 databases into Cloudflare R2 or a local folder,
verifies and restores those backups, applies retention, and drives the
deployed AWS workflow.

Configuration comes from the environment (wrangler's names; flags override):
  CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_BASE_URL,
  R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, R2_BUCKET, R2_ENDPOINT, D1BACKUP_*.
Without R2_BUCKET, backups go to ./d1-backups. run/executions/redrive use the
AWS credential chain (AWS_PROFILE, AWS_REGION) and D1BACKUP_STATE_MACHINE_ARN.`

func newRoot(e env) *cobra.Command {
	root := &cobra.Command{
		Use:           "d1backup",
		Short:         "Backups of Cloudflare D1 databases into R2",
		Long:          rootLong,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Unknown commands reach here (rather than cobra's suggestion
		// text) so they exit 2 with one line.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("unknown command %q; run 'd1backup --help' for the commands", args[0])}
			}
			return cmd.Help()
		},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.SetVersionTemplate("d1backup {{.Version}}\n")
	root.AddCommand(
		newBackupCmd(e), newListCmd(e), newVerifyCmd(e), newRestoreCmd(e), newPruneCmd(e),
		newRunCmd(e), newExecutionsCmd(e), newRedriveCmd(e), newStepCmd(e), newVersionCmd(e),
	)
	return root
}

func newVersionCmd(e env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(e.stdout, "d1backup", version())
			return err
		},
	}
}

// loadConfig reads the environment, then the command's setting flags; a
// bad flag value is a usage error.
func loadConfig(cmd *cobra.Command, e env) (config.Config, error) {
	cfg, err := config.FromEnv(e.getenv)
	if err != nil {
		return cfg, err
	}
	if err := config.ApplyFlags(&cfg, cmd.Flags()); err != nil {
		return cfg, usageError{err.Error()}
	}
	return cfg, nil
}

// destFlag adds --dest.
func destFlag(cmd *cobra.Command, help string) *string {
	return cmd.Flags().String("dest", "", help+": "+strings.Join(dest.Usages(), " or ")+" (default: R2_BUCKET if set, else ./"+config.DefaultLocalDir+")")
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
