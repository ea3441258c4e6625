package step_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/internal/testenv"
)

// handlers loads the functions' handlers in process from an environment
// pointed at the emulator (and, with s3, a bucket).
func handlers(t *testing.T, emu *d1emutest.Emulator, s3 *testenv.S3, opts step.Options, env ...string) (*step.Handlers, *bytes.Buffer) {
	t.Helper()
	vars := []string{"CLOUDFLARE_ACCOUNT_ID=" + emu.AccountID(), "CLOUDFLARE_API_TOKEN=" + emu.Token(),
		"CLOUDFLARE_API_BASE_URL=" + emu.BaseURL, "D1BACKUP_SECRET_ARNS="}
	if s3 != nil {
		vars = append(vars, s3.Env(s3.NewBucket(t))...)
	}
	for _, kv := range append(vars, env...) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var log bytes.Buffer
	opts.Log = &log
	return step.Load(context.Background(), opts), &log
}

func invocation(st step.ExportState, redriven *time.Time) step.Invocation[step.ExportState] {
	e := step.Execution{ID: "arn:aws:states:us-east-1:123456789012:execution:BackupDatabase:x", Name: "x"}
	if redriven != nil {
		e.RedriveCount, e.RedriveTime = 1, redriven
	}
	return step.Invocation[step.ExportState]{State: st, Execution: e}
}

// The poll interval doubles from D1BACKUP_POLL_INTERVAL up to its cap while
// the export runs, which bounds the history of a long export.
func TestPollBacksOff(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{ExportPolls: 7})
	emu.MustCreate(t, "orders", seed)
	h, _ := handlers(t, emu, nil, step.Options{Cloudflare: true, Seal: true}, "D1BACKUP_POLL_INTERVAL=5", "D1BACKUP_POLL_INTERVAL_MAX=60")
	ctx := context.Background()
	st, err := h.StartExport(ctx, invocation(step.ExportState{Export: backup.Export{DatabaseName: "orders"}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	got := []int{st.PollIntervalSeconds}
	for st.Status == backup.StatusActive {
		if st, err = h.PollExport(ctx, invocation(st, nil)); err != nil {
			t.Fatal(err)
		}
		if st.Status == backup.StatusActive {
			got = append(got, st.PollIntervalSeconds)
		}
	}
	if want := []int{5, 10, 20, 40, 60, 60, 60}; !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	if st.Status != backup.StatusComplete || st.SealedURL == "" || strings.Contains(st.SealedURL, "http") {
		t.Errorf("complete export %+v: want a sealed URL, never the signed one", st.Export)
	}
}

// Redrive reruns a failed step with the input it had. An export from the
// attempt before the redrive gets a fresh start instead of failing again
// for being stale; within one attempt the bounds hold.
func TestRedrivenExportStartsAfresh(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{ExportPolls: 3})
	db := emu.MustCreate(t, "orders", seed)
	h, _ := handlers(t, emu, nil, step.Options{Cloudflare: true, Seal: true}, "D1BACKUP_MAX_RESTARTS=1")
	ctx := context.Background()
	started, err := h.StartExport(ctx, invocation(step.ExportState{Export: backup.Export{DatabaseName: "orders"}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	past := started
	past.Deadline = time.Now().Add(-time.Minute)
	usedUp := started
	usedUp.Restarts = 1
	usedUp.RestartCause = &backup.StepError{Error: "DownloadExpiredError", Cause: "expired"}
	later := time.Now().Add(time.Second)
	earlier := started.StartedAt.Add(-time.Hour)

	for _, tt := range []struct {
		name     string
		step     func(context.Context, step.Invocation[step.ExportState]) (step.ExportState, error)
		state    step.ExportState
		redriven *time.Time
		wantErr  any
	}{
		{"deadline passed", h.PollExport, past, nil, new(*backup.ExportTimeoutError)},
		{"deadline passed, redriven", h.PollExport, past, &later, nil},
		{"deadline passed, in the redriven attempt", h.PollExport, past, &earlier, new(*backup.ExportTimeoutError)},
		{"restarts used up", h.StartExport, usedUp, nil, new(*backup.TooManyRestartsError)},
		{"restarts used up, redriven", h.StartExport, usedUp, &later, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			emu.ClearFaults()
			// A fresh export needs the old one gone, as it would be after
			// the time a redrive takes.
			emu.InjectFault(d1emu.Fault{Endpoint: "poll", Kind: d1emu.FaultNotExporting, Database: db.UUID})
			_, _ = h.PollExport(ctx, invocation(started, nil))
			out, err := tt.step(ctx, invocation(tt.state, tt.redriven))
			if tt.wantErr != nil {
				if err == nil || !errors.As(err, tt.wantErr) {
					t.Fatalf("got %+v, %v; want %T", out, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.Restarts != 0 || !out.StartedAt.After(started.StartedAt) || out.Deadline.Before(time.Now()) || out.Status == "" {
				t.Errorf("got %+v, want a fresh export: restarts 0, started anew, deadline ahead", out.Export)
			}
		})
	}
}

// A rate limit is handed to the workflow to wait out (Cloudflare's
// Retry-After, bounded), until the execution has waited MaxThrottle.
func TestRateLimitIsWaitedOut(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	emu.MustCreate(t, "orders", seed)
	h, log := handlers(t, emu, nil, step.Options{Cloudflare: true, Seal: true})
	ctx := context.Background()
	st := step.ExportState{Export: backup.Export{DatabaseName: "orders"}}
	var waits []int
	for i := 0; i < 10; i++ {
		emu.InjectFault(d1emu.Fault{Endpoint: "export", Kind: d1emu.FaultRateLimit, RetryAfter: 900})
		out, err := h.StartExport(ctx, invocation(st, nil))
		var rl *d1.RateLimitError
		if errors.As(err, &rl) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if out.DatabaseName != "orders" || out.Bookmark != "" {
			t.Fatalf("throttled output %+v, want the input back", out)
		}
		waits = append(waits, out.RetryAfterSeconds)
		st = out
	}
	if want := []int{600, 600, 600}; !slices.Equal(waits, want) {
		t.Errorf("waits %v, want %v (Retry-After 900 s capped at 10 min, until 30 min in all)", waits, want)
	}
	// Each wait is counted for the dashboard's throttles.
	if got := strings.Count(log.String(), `"RateLimitWaitSeconds":600,"RateLimited":1`); got != 3 {
		t.Errorf("%d RateLimited metric lines with the wait, want 3:\n%s", got, log.String())
	}
	emu.ClearFaults()
	out, err := h.StartExport(ctx, invocation(st, nil))
	if err != nil || out.RetryAfterSeconds != 0 || out.ThrottledSeconds != 1800 || out.Status == "" {
		t.Errorf("after the limit: %+v, %v; want the export started, no wait pending, 1800 s waited", out, err)
	}
}

// A sealed URL the store step cannot open (the sealing key was rotated)
// is a SealedURLError, which the workflow answers with a new export.
func TestSealedURLFromAnotherKey(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	emu.MustCreate(t, "orders", seed)
	s3 := testenv.RequireS3(t)
	start, _ := handlers(t, emu, nil, step.Options{Cloudflare: true, Seal: true}, "D1BACKUP_SEAL_KEY=old-key-of-at-least-thirty-two-characters")
	st, err := start.StartExport(context.Background(), invocation(step.ExportState{Export: backup.Export{DatabaseName: "orders"}}, nil))
	if err != nil || st.SealedURL == "" {
		t.Fatalf("start: %+v, %v", st, err)
	}
	store, _ := handlers(t, emu, s3, step.Options{Store: true, Seal: true}, "D1BACKUP_SEAL_KEY=new-key-of-at-least-thirty-two-characters", "CLOUDFLARE_API_TOKEN=")
	_, err = store.StoreDump(context.Background(), st.Export)
	var sealed *step.SealedURLError
	if !errors.As(err, &sealed) || step.ErrorType(err) != "SealedURLError" {
		t.Fatalf("store: %v (%T), want a SealedURLError", err, err)
	}
	for _, c := range step.ErrorClasses() {
		if c.Name == "SealedURLError" && c.Kind != backup.Restart {
			t.Errorf("SealedURLError is %v, want a restart", c.Kind)
		}
	}
}

// BackupSucceeded is published after verification, per database only for
// a database the configuration lists, by the dimension it is listed by.
func TestSucceededMetricDimensions(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	db := emu.MustCreate(t, "orders", seed)
	s3 := testenv.RequireS3(t)
	for _, tt := range []struct {
		databases string
		want      string
	}{
		{"*", `[[]]`},
		{"orders", `[[],["Database"]]`},
		{strings.ToUpper(db.UUID), `[[],["DatabaseId"]]`},
		{"orders," + db.UUID, `[[],["Database"],["DatabaseId"]]`},
	} {
		t.Run(tt.databases, func(t *testing.T) {
			h, log := handlers(t, emu, s3, step.Options{Cloudflare: true, Store: true, Seal: true}, "D1BACKUP_DATABASES="+tt.databases)
			ctx := context.Background()
			st, err := h.StartExport(ctx, invocation(step.ExportState{Export: backup.Export{DatabaseName: "orders"}}, nil))
			if err != nil {
				t.Fatal(err)
			}
			res, err := h.StoreDump(ctx, st.Export)
			if err != nil || res.Summary == nil {
				t.Fatalf("store: %+v, %v; want the stored backup in one invocation", res, err)
			}
			sum := *res.Summary
			if strings.Contains(log.String(), `"BackupSucceeded"`) {
				t.Fatal("BackupSucceeded published before verification")
			}
			if _, err := h.Verify(ctx, step.Result{Summary: sum}); err != nil {
				t.Fatal(err)
			}
			var line struct {
				AWS struct {
					CloudWatchMetrics []struct{ Dimensions json.RawMessage } `json:"CloudWatchMetrics"`
				} `json:"_aws"`
				Succeeded  float64 `json:"BackupSucceeded"`
				Database   string  `json:"Database"`
				DatabaseID string  `json:"DatabaseId"`
			}
			for _, l := range strings.Split(log.String(), "\n") {
				if strings.Contains(l, `"BackupSucceeded"`) {
					if err := json.Unmarshal([]byte(l), &line); err != nil {
						t.Fatal(err)
					}
				}
			}
			if line.Succeeded != 1 || line.Database != "orders" || line.DatabaseID != db.UUID || len(line.AWS.CloudWatchMetrics) != 1 {
				t.Fatalf("metric line %+v", line)
			}
			if got := string(line.AWS.CloudWatchMetrics[0].Dimensions); got != tt.want {
				t.Errorf("dimensions %s, want %s", got, tt.want)
			}
		})
	}
}
