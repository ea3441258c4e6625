// Command d1backup backs up Cloudflare D1 databases into R2 or a folder,
// lists, verifies, restores and prunes those backups, reports whether every
// database is backed up, and drives the deployed workflow. Commands and
// flags are spf13/cobra's (GNU-style flags, generated help, shell
// completion); the flags that are settings come from the settings table in
// internal/config, so the CLI, the Lambda functions and the CDK stack read
// the same names, defaults and ranges.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/dest"
	"github.com/d1backup/d1backup/internal/store"
)

// env is the process environment as the commands see it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// terminal is true when stderr is a terminal (a redrawn progress line
	// at most width columns wide).
	terminal bool
	width    int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, terminal: isTerminal(os.Stderr), width: terminalWidth(os.Stderr)}
	os.Exit(run(ctx, os.Args[1:], e))
}

// Exit codes.
const (
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// run executes one command line and returns the exit code: 0 success, 1
// failure, 2 a usage mistake (unknown command or flag, a bad flag value, a
// missing argument), 130 interrupted.
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
	switch {
	case errors.Is(err, errReported):
		return exitFailure
	case ctx.Err() != nil:
		fmt.Fprintf(e.stderr, "%s: interrupted\n", name)
		return exitInterrupted
	case isUsage(err):
		msg := message(err)
		if !strings.Contains(msg, "--help") {
			msg += fmt.Sprintf(" (see '%s --help')", name)
		}
		fmt.Fprintf(e.stderr, "%s: %s\n", name, msg)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "%s: %s\n", name, message(err))
	return exitFailure
}

// errReported makes run exit 1 without a line of its own: the command has
// already said what failed.
var errReported = errors.New("failure already reported")

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func isUsage(err error) bool {
	var (
		ue usageError
		de *dest.UsageError
	)
	return errors.As(err, &ue) || errors.As(err, &de) || isCobraUsage(err)
}

// isCobraUsage recognises the usage errors cobra makes itself (it has no
// error types for them).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag", "if any flags in the group"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// packagePrefixes are the prefixes d1backup's packages put on their errors;
// the command's name already says where a message comes from.
var packagePrefixes = []string{"backup: ", "restore: ", "d1: ", "config: "}

// message is err as one line for a person: no repeated prefix, whitespace
// collapsed, control characters escaped.
func message(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	for trimmed := true; trimmed; {
		trimmed = false
		for _, p := range packagePrefixes {
			if m, ok := strings.CutPrefix(msg, p); ok {
				msg, trimmed = m, true
			}
		}
	}
	return clean(msg)
}

const rootLong = `d1backup backs up Cloudflare D1 databases into Cloudflare R2 or a local folder,
verifies and restores those backups, applies retention, reports whether every
database is backed up, and drives the deployed AWS workflow.

Configuration comes from the environment (wrangler's names; flags override):
  CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_BASE_URL,
  R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, R2_BUCKET, R2_ENDPOINT, D1BACKUP_*.
Without R2_BUCKET, backups go to ./d1-backups. run/executions/redrive use the
AWS credential chain (AWS_PROFILE, AWS_REGION) and D1BACKUP_STATE_MACHINE_ARN.

Every command takes --help; the backup commands take --json for scripts.
Exit status: 0 success, 1 failure, 2 a usage mistake, 130 interrupted.
Shell completion: d1backup completion --help.`

const (
	groupBackups  = "backups"
	groupWorkflow = "workflow"
)

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
				return usagef("unknown command %q; run 'd1backup --help' for the commands", args[0])
			}
			return cmd.Help()
		},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.SetVersionTemplate("d1backup {{.Version}}\n")
	root.AddGroup(
		&cobra.Group{ID: groupBackups, Title: "Backups:"},
		&cobra.Group{ID: groupWorkflow, Title: "The deployed workflow (AWS):"},
	)
	for _, c := range []*cobra.Command{newBackupCmd(e), newListCmd(e), newStatusCmd(e), newVerifyCmd(e), newRestoreCmd(e), newPruneCmd(e)} {
		c.GroupID = groupBackups
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newRunCmd(e), newExecutionsCmd(e), newRedriveCmd(e)} {
		c.GroupID = groupWorkflow
		root.AddCommand(c)
	}
	root.AddCommand(newStepCmd(e), newVersionCmd(e))
	return root
}

func newVersionCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
	}
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(*cobra.Command, []string) error {
		if *asJSON {
			return printJSON(e.stdout, struct {
				Version string `json:"version"`
			}{version()})
		}
		_, err := fmt.Fprintln(e.stdout, "d1backup", version())
		return err
	}
	return cmd
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

// configAndDest loads the configuration and opens the destination (d, or
// the default) for a command that reads backups.
func configAndDest(cmd *cobra.Command, e env, d string) (config.Config, store.Store, error) {
	cfg, err := loadConfig(cmd, e)
	if err != nil {
		return cfg, nil, err
	}
	st, err := cfg.OpenDest(d, http.DefaultClient)
	return cfg, st, err
}

// destFlag adds --dest.
func destFlag(cmd *cobra.Command, what string) *string {
	var forms []string
	for _, u := range dest.Usages() {
		form, _, _ := strings.Cut(u, " (")
		forms = append(forms, form)
	}
	return cmd.Flags().String("dest", "", fmt.Sprintf("`location` %s: %s (default: r2://$R2_BUCKET/$D1BACKUP_PREFIX if R2_BUCKET is set, else ./%s)",
		what, strings.Join(forms, ", "), config.DefaultLocalDir))
}

// jsonFlag adds --json; every command that prints a result takes it.
func jsonFlag(cmd *cobra.Command) *bool {
	return cmd.Flags().Bool("json", false, "print the result as one JSON object on stdout (the shapes are in the README)")
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// exactArgs wants n positional arguments, else a usage error saying msg.
func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{msg}
		}
		return nil
	}
}

// newLogger logs what the libraries report (retries, restarts) to w:
// warnings, or everything with --verbose.
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func isUUID(s string) bool { return d1.IsUUID(s) }
