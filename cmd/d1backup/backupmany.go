package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/step"
)

// manyResult is one database of `backup --json` with several databases.
type manyResult struct {
	DatabaseID   string `json:"database_id"`
	DatabaseName string `json:"database_name"`
	// Status is stored, already_stored or failed.
	Status         string          `json:"status"`
	ElapsedSeconds float64         `json:"elapsed_seconds"`
	Backup         *backup.Summary `json:"backup,omitempty"`
	Error          *errorJSON      `json:"error,omitempty"`
}

// errorJSON is an error for scripts: its class (the errorType the workflow
// would report) and its message.
type errorJSON struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type manyJSON struct {
	Databases     []manyResult `json:"databases"`
	Stored        int          `json:"stored"`
	AlreadyStored int          `json:"already_stored"`
	Failed        int          `json:"failed"`
}

// Result statuses.
const (
	statusStored        = "stored"
	statusAlreadyStored = "already_stored"
	statusFailed        = "failed"
)

// many backs up every database the selection picks, concurrency at once:
// one line per event on stderr, then a summary table (or JSON) on stdout.
func (b *backupRun) many(ctx context.Context, sel backup.Selection, asJSON bool) error {
	targets, err := backup.Discover(ctx, b.api, sel)
	if err != nil {
		return backup.Classified(err)
	}
	if len(targets) == 0 {
		return fmt.Errorf("no database to back up: none in the account matches the selection (databases %s, include %s, exclude %s)",
			strings.Join(sel.Databases, ","), strings.Join(sel.Include, ","), strings.Join(sel.Exclude, ","))
	}
	fmt.Fprintf(b.e.stderr, "backing up %s into %s, %d at a time\n", count(len(targets), "database", "databases"), clean(b.st.String()), min(b.cfg.Concurrency, len(targets)))
	// One writer for every database's lines, so lines never interleave.
	var mu sync.Mutex
	w := lockedWriter{mu: &mu, w: b.e.stderr}
	outcomes := backup.RunMany(ctx, targets, b.cfg.Concurrency, func(ctx context.Context, t backup.Target) (backup.Summary, error) {
		p := newProgress(w, t.DatabaseName, false, 0, time.Now)
		r, err := b.runner(p, w)
		if err != nil {
			return backup.Summary{}, err
		}
		p.start()
		sum, err := r.Run(ctx, t)
		took := p.storing()
		p.finish()
		if err != nil {
			p.report("%s: FAILED: %s", clean(t.DatabaseName), message(backup.Classified(err)))
		} else {
			p.report("%s: %s", clean(t.DatabaseName), storedLine(sum, took))
		}
		return sum, err
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res := manyJSON{Databases: []manyResult{}}
	var failed []string
	for _, o := range outcomes {
		r := manyResult{DatabaseID: o.Target.DatabaseID, DatabaseName: o.Target.DatabaseName, ElapsedSeconds: o.Elapsed.Seconds()}
		switch {
		case o.Err != nil:
			r.Status, r.Error = statusFailed, &errorJSON{Type: step.ErrorType(o.Err), Message: message(o.Err)}
			res.Failed++
			failed = append(failed, clean(o.Target.DatabaseName))
		case o.Summary.AlreadyExisted:
			r.Status, r.Backup = statusAlreadyStored, &o.Summary
			res.AlreadyStored++
		default:
			r.Status, r.Backup = statusStored, &o.Summary
			res.Stored++
		}
		res.Databases = append(res.Databases, r)
	}
	if asJSON {
		if err := printJSON(b.e.stdout, res); err != nil {
			return err
		}
	} else {
		printMany(b, res)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %s failed: %s", len(failed), count(len(outcomes), "database", "databases"), strings.Join(failed, ", "))
	}
	return nil
}

func printMany(b *backupRun, res manyJSON) {
	tw := table(b.e.stdout)
	fmt.Fprintln(tw, "DATABASE\tRESULT\tBACKUP\tSQL\tSTORED\tTOOK")
	var failures []string
	for _, r := range res.Databases {
		name := truncate(clean(r.DatabaseName), 32)
		took := elapsed(secs(r.ElapsedSeconds))
		if r.Error != nil {
			fmt.Fprintf(tw, "%s\tFAILED\t-\t-\t-\t%s\n", name, took)
			failures = append(failures, name+": "+r.Error.Message)
			continue
		}
		s := r.Backup
		result := "stored"
		if r.Status == statusAlreadyStored {
			result = "already stored"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, result, backup.ID(s.DatabaseID, s.Bookmark),
			bytesHuman(s.SQLBytes), bytesHuman(s.StoredBytes)+" "+format(s.Compression, s.Encrypted), took)
	}
	tw.Flush()
	fmt.Fprintf(b.e.stdout, "%s: %d stored, %d already stored, %d failed\n",
		count(len(res.Databases), "database", "databases"), res.Stored, res.AlreadyStored, res.Failed)
	for _, f := range failures {
		fmt.Fprintln(b.e.stdout, "  "+f)
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  interface{ Write([]byte) (int, error) }
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
