package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/codec"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/store"
)

const backupLong = `Backs up D1 databases: starts an export, polls it until it completes, then
streams the dump (SHA-256, compression, optional age encryption) into the
destination and writes the manifest beside it. D1 answers no queries to a
database while its export runs; the progress says for how long.

Which databases:
  --database <uuid|name>   one database (repeatable)
  --all                    every database in the account, filtered by
                           --include/--exclude (D1BACKUP_INCLUDE/EXCLUDE)
  neither                  D1BACKUP_DATABASES, as the scheduled workflow reads it

With several databases, --concurrency of them run at once; a summary table
follows, and the exit status is 1 when any failed. A rerun of an unchanged
database stores nothing new ("already stored").`

const backupExample = `  d1backup backup --database shop
  d1backup backup --database shop --database blog --dest r2://backups/prod
  d1backup backup --all --exclude 'test-*' --concurrency 2 --json`

// selection is what a backup command line asks for.
type selection struct {
	one   string // a single database: no discovery, the summary as before
	multi *backup.Selection
}

func newBackupCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "backup (--database <uuid|name>... | --all)",
		Short:   "Back up databases: export, stream into the destination, write the manifest",
		Long:    backupLong,
		Example: backupExample,
		Args:    noArgs,
	}
	f := cmd.Flags()
	databases := f.StringArray("database", nil, "database to back up, by `uuid|name` (repeatable)")
	all := f.Bool("all", false, "back up every database in the account (with --include/--exclude)")
	d := destFlag(cmd, "to store the backups in")
	asJSON := jsonFlag(cmd)
	verbose := f.Bool("verbose", false, "log every step of the pipeline")
	config.BindFlags(f, config.SettingInclude, config.SettingExclude, config.SettingConcurrency,
		config.SettingCompression, config.SettingAgeRecipients, config.SettingPollInterval,
		config.SettingExportTimeout, config.SettingMaxRestarts, config.SettingPartSize, config.SettingPartConcurrency,
		config.SettingMethod, config.SettingAllowCrossJuris)
	cmd.RegisterFlagCompletionFunc(config.SettingCompression, cobra.FixedCompletions(codec.Names(), cobra.ShellCompDirectiveNoFileComp)) //nolint:errcheck
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd, e)
		if err != nil {
			return err
		}
		sel, err := pickDatabases(cmd, e, cfg, *databases, *all)
		if err != nil {
			return err
		}
		b, err := newBackupRun(cmd, e, cfg, *d, *verbose)
		if err != nil {
			return err
		}
		if sel.multi == nil {
			return b.one(cmd.Context(), sel.one, *asJSON)
		}
		return b.many(cmd.Context(), *sel.multi, *asJSON)
	}
	return cmd
}

// pickDatabases reads which databases the command line asks for.
func pickDatabases(cmd *cobra.Command, e env, cfg config.Config, databases []string, all bool) (selection, error) {
	filtered := cmd.Flags().Changed(config.SettingInclude) || cmd.Flags().Changed(config.SettingExclude)
	for _, db := range databases {
		if strings.TrimSpace(db) == "" {
			return selection{}, usagef("--database needs a UUID or a name")
		}
	}
	switch {
	case all && len(databases) > 0:
		return selection{}, usagef("give --database or --all, not both")
	case filtered && !all && len(databases) > 0:
		return selection{}, usagef("--include and --exclude filter --all; with --database, name the databases you want")
	case all:
		return selection{multi: &backup.Selection{Databases: []string{"*"}, Include: cfg.Include, Exclude: cfg.Exclude}}, nil
	case len(databases) == 1:
		return selection{one: databases[0]}, nil
	case len(databases) > 1:
		return selection{multi: &backup.Selection{Databases: databases}}, nil
	case e.getenv(config.EnvDatabases) != "":
		s := cfg.Selection()
		return selection{multi: &s}, nil
	}
	return selection{}, usagef("which databases? give --database <uuid|name> (repeatable) or --all, or set %s", config.EnvDatabases)
}

// backupRun holds what every database of one command line shares.
type backupRun struct {
	e   env
	cfg config.Config
	api interface {
		backup.D1
		backup.Lister
	}
	st      store.Store
	verbose bool
	// dest is the destination as given, for its jurisdiction.
	dest string
}

func newBackupRun(cmd *cobra.Command, e env, cfg config.Config, destination string, verbose bool) (*backupRun, error) {
	hc := cfg.HTTPClient()
	// The destination first: a mistake in --dest is a usage error, and
	// the environment's D1 settings are checked after it.
	st, err := cfg.OpenDest(destination, hc)
	if err != nil {
		return nil, err
	}
	api, err := cfg.D1Client(hc)
	if err != nil {
		return nil, err
	}
	cfg.BoundMemory(e.getenv)
	return &backupRun{e: e, cfg: cfg, api: api, st: st, verbose: verbose, dest: destination}, nil
}

// runner is a Runner whose progress goes to p.
func (b *backupRun) runner(p *progress, log io.Writer) (*backup.Runner, error) {
	bc := b.cfg.Backup(version())
	bc.Logger, bc.Progress, bc.OnExport, bc.Query.Progress = newLogger(log, b.verbose), p.onBytes, p.onExport, p.onQuery
	bc.DestJurisdiction = b.cfg.Residency(b.dest)
	return backup.NewRunner(b.api, b.st, bc)
}

// one backs up a single database, with a live line on a terminal.
func (b *backupRun) one(ctx context.Context, ref string, asJSON bool) error {
	p := newProgress(b.e.stderr, ref, b.e.terminal, b.e.width, time.Now)
	r, err := b.runner(p, p)
	if err != nil {
		return err
	}
	p.start()
	sum, err := r.Run(ctx, target(ref))
	took := p.storing()
	p.finish()
	if err != nil {
		return backup.Classified(err)
	}
	if asJSON {
		return printJSON(b.e.stdout, sum)
	}
	fmt.Fprintf(b.e.stdout, "%s: %s\n", clean(sum.DatabaseName), storedLine(sum, took))
	if !sum.AlreadyExisted {
		fmt.Fprintf(b.e.stdout, "  key     %s\n  sql     sha256 %s\n  stored  sha256 %s\n",
			clean(joinKey(b.st.String(), sum.Key)), sum.SQLSHA256, sum.StoredSHA256)
	}
	printQueryLines(b.e.stdout, sum)
	for _, n := range sum.Notes {
		fmt.Fprintf(b.e.stdout, "  note    %s\n", clean(n))
	}
	return nil
}

func target(ref string) backup.Target {
	if isUUID(ref) {
		return backup.Target{DatabaseID: strings.ToLower(ref)}
	}
	return backup.Target{DatabaseName: ref}
}

func joinKey(root, key string) string {
	if root == "" || root[len(root)-1] == '/' {
		return root + key
	}
	return root + "/" + key
}
