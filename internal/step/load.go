package step

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
)

// Options say what a function needs. The stack derives from them which
// secrets a function may read (Secrets) and which grants it gets.
type Options struct {
	// Cloudflare: the function calls the D1 API (the API token).
	Cloudflare bool
	// Store: it reads or writes the bucket (the R2 keys).
	Store bool
	// Seal: it seals or opens signed dump URLs (the sealing key).
	Seal bool
	// StepFunctions: it reads or redrives the workflow's executions.
	StepFunctions bool
	// BoundMemory sets the runtime's memory limit for streaming uploads
	// (the store step; see config.BoundMemory).
	BoundMemory bool
	// Version goes into manifests.
	Version string
	// Log receives JSON log lines and metrics; os.Stdout (CloudWatch Logs)
	// if nil.
	Log io.Writer
}

// The secrets the stack creates; a function reads only those it needs.
const (
	SecretCloudflare = "cloudflare" // CLOUDFLARE_API_TOKEN
	SecretR2         = "r2"         // R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY
	SecretSeal       = "seal"       // D1BACKUP_SEAL_KEY
)

// Secrets lists the secrets a function with these options reads.
func (o Options) Secrets() []string {
	var out []string
	if o.Cloudflare {
		out = append(out, SecretCloudflare)
	}
	if o.Store {
		out = append(out, SecretR2)
	}
	if o.Seal {
		out = append(out, SecretSeal)
	}
	return out
}

// Load builds the handlers of a Lambda function: settings from the
// environment; credentials from the Secrets Manager secrets listed in
// D1BACKUP_SECRET_ARNS (or, without any, from the environment as for the
// CLI). Nothing is read at cold start: the first invocation reads the
// secrets and builds the clients, which are kept for SecretTTL and rebuilt
// when the secrets' values change. A failure is returned by the invocation
// as a ConfigError (with its cause, never a secret's value) and is not kept.
func Load(_ context.Context, opts Options) *Handlers {
	return load(opts, os.Getenv, newSecrets(os.Getenv(config.EnvSecretARNs), time.Now))
}

func load(opts Options, getenv func(string) string, sec *secrets) *Handlers {
	logTo := cmp.Or[io.Writer](opts.Log, os.Stdout)
	h := &Handlers{now: time.Now, metrics: logTo, invalidate: sec.invalidate}
	if opts.BoundMemory {
		if cfg, err := config.FromEnv(getenv); err == nil {
			cfg.BoundMemory(getenv)
		}
	}
	var (
		mu     sync.Mutex
		cur    *deps
		curKey string
	)
	h.deps = func(ctx context.Context) (*deps, error) {
		values, err := sec.get(ctx)
		if err != nil {
			return nil, &backup.ConfigError{Msg: err.Error()}
		}
		mu.Lock()
		defer mu.Unlock()
		key := fingerprint(values)
		if cur != nil && key == curKey {
			return cur, nil
		}
		env := func(k string) string {
			if v, ok := values[k]; ok && v != "" {
				return v
			}
			return getenv(k)
		}
		d, err := build(ctx, opts, env, logTo)
		if err != nil {
			// Perhaps a secret not filled in yet: read it again next time.
			sec.invalidate()
		}
		var ce *backup.ConfigError
		switch {
		case errors.As(err, &ce):
			return nil, ce
		case err != nil:
			return nil, &backup.ConfigError{Msg: err.Error()}
		}
		cur, curKey = d, key
		return d, nil
	}
	return h
}

// build makes the clients a function needs from its configuration.
func build(ctx context.Context, opts Options, getenv func(string) string, logTo io.Writer) (*deps, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient()
	d := &deps{cfg: cfg, sel: cfg.Selection()}
	if opts.Cloudflare || opts.Seal {
		dc := cfg
		if !opts.Cloudflare {
			// The store step only downloads signed URLs, which carry their
			// own authorization: it holds no API token, and the client's
			// required one is never sent.
			dc.APIToken = "unused: the store step makes no API calls"
		}
		if d.api, err = dc.D1Client(hc); err != nil {
			return nil, err
		}
	}
	if opts.Store {
		if !cfg.HasR2() {
			return nil, fmt.Errorf("%s is not set", config.EnvR2Bucket)
		}
		if d.store, err = cfg.OpenDest("", hc); err != nil {
			return nil, err
		}
	}
	if opts.Seal {
		// Without a sealing key (local runs, where every step shares the
		// CLI's environment) the API token and account are the key material.
		if d.sealer = cfg.Sealer(); d.sealer == nil {
			return nil, &backup.ConfigError{Msg: config.EnvSealKey + " is not set (or shorter than 32 characters): the key that seals dump URLs in workflow state"}
		}
	}
	if opts.StepFunctions {
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("load AWS config: %w", err)
		}
		d.sfn = sfn.NewFromConfig(awsCfg)
	}
	if d.api != nil {
		bc := cfg.Backup(cmp.Or(opts.Version, "dev"))
		bc.Logger = slog.New(slog.NewJSONHandler(logTo, nil))
		var api backup.D1 = d.api
		if d.runner, err = backup.NewRunner(api, d.store, bc); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// storeDeps returns the clients of a step that uses the bucket, or a
// ConfigError for a function deployed without it.
func (h *Handlers) storeDeps(ctx context.Context) (*deps, error) {
	d, err := h.deps(ctx)
	if err != nil {
		return nil, err
	}
	if d.store == nil {
		return nil, &backup.ConfigError{Msg: "this function has no store (step registry Options)"}
	}
	return d, nil
}

// d1Deps returns the clients of a step that calls the D1 API, or a
// ConfigError for a function deployed without them (a contract bug
// between the registry and a handler).
func (h *Handlers) d1Deps(ctx context.Context) (*deps, error) {
	d, err := h.deps(ctx)
	if err != nil {
		return nil, err
	}
	if d.api == nil || d.runner == nil {
		return nil, &backup.ConfigError{Msg: "this function has no D1 client (step registry Options)"}
	}
	return d, nil
}
