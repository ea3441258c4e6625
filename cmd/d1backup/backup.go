package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
)

func newBackupCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup --database <uuid|name>",
		Short: "Back up a database: export, stream into the destination, write the manifest",
		Args:  cobra.NoArgs,
	}
	database := cmd.Flags().String("database", "", "database to back up: its UUID or its name (required)")
	d := destFlag(cmd, "where to store the backup")
	asJSON := cmd.Flags().Bool("json", false, "print the result as JSON on stdout")
	verbose := cmd.Flags().Bool("verbose", false, "log every step")
	config.BindFlags(cmd.Flags(), config.SettingCompression, config.SettingAgeRecipients, config.SettingPollInterval,
		config.SettingExportTimeout, config.SettingMaxRestarts, config.SettingPartSize, config.SettingPartConcurrency,
		config.SettingMethod, config.SettingAllowCrossJuris)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *database == "" {
			return usageError{"--database is required (a database UUID or name)"}
		}
		cfg, err := loadConfig(cmd, e)
		if err != nil {
			return err
		}
		hc := cfg.HTTPClient()
		api, err := cfg.D1Client(hc)
		if err != nil {
			return err
		}
		cfg.BoundMemory(e.getenv)
		st, err := cfg.OpenDest(*d, hc)
		if err != nil {
			return err
		}
		log := newLogger(e, *verbose)
		prog := newProgress(e, log)
		bc := cfg.Backup(version())
		bc.Logger, bc.Progress, bc.Query.Progress = log, prog.update, prog.query
		bc.DestJurisdiction = cfg.Residency(*d)
		runner, err := backup.NewRunner(api, st, bc)
		if err != nil {
			return err
		}
		if bc.Method == backup.MethodQuery {
			fmt.Fprintf(e.stderr, "d1backup: reading %s into %s through D1's query API; this blocks nobody\n", *database, st)
		} else {
			fmt.Fprintf(e.stderr, "d1backup: exporting %s to %s; D1 answers no queries to the database while the export runs\n", *database, st)
		}
		sum, err := runner.Run(cmd.Context(), target(*database))
		prog.done()
		if err != nil {
			return backup.Classified(err)
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(sum)
		}
		verb := "stored"
		if sum.AlreadyExisted {
			verb = "already stored"
		}
		fmt.Fprintf(e.stdout, "%s %s (%s) at bookmark %s: %s\n  SQL %s, sha256 %s\n  stored %s (%s), sha256 %s\n",
			verb, sum.DatabaseName, sum.DatabaseID, sum.Bookmark, joinKey(st.String(), sum.Key),
			bytesHuman(sum.SQLBytes), sum.SQLSHA256, bytesHuman(sum.StoredBytes), sum.Compression, sum.StoredSHA256)
		printQueryLines(e, sum)
		return nil
	}
	return cmd
}

func target(ref string) backup.Target {
	if isUUID(ref) {
		return backup.Target{DatabaseID: ref}
	}
	return backup.Target{DatabaseName: ref}
}

func joinKey(root, key string) string {
	if root == "" || root[len(root)-1] == '/' {
		return root + key
	}
	return root + "/" + key
}

func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// progress shows bytes and rate of the dump: a line redrawn every 200 ms on
// a terminal, a log line every 10 s elsewhere.
type progress struct {
	mu    sync.Mutex
	e     env
	log   *slog.Logger
	start time.Time
	last  time.Time
	drawn bool
}

func newProgress(e env, log *slog.Logger) *progress {
	return &progress{e: e, log: log}
}

func (p *progress) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.start.IsZero() {
		p.start, p.last = now, now
	}
	every := 10 * time.Second
	if p.e.terminal {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every && done != total {
		return
	}
	p.last = now
	rate := int64(float64(done) / max(now.Sub(p.start).Seconds(), 0.001))
	if !p.e.terminal {
		p.log.Info("downloading dump", "bytes", done, "total", total, "bytes_per_second", rate)
		return
	}
	of := ""
	if total >= 0 {
		of = " / " + bytesHuman(total)
	}
	fmt.Fprintf(p.e.stderr, "\r\033[K  %s%s  %s/s", bytesHuman(done), of, bytesHuman(rate))
	p.drawn = true
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.e.stderr)
	}
}
