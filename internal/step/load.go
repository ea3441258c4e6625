package step

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
)

// Load builds the handlers for a Lambda cold start: settings from the
// environment, credentials from the Secrets Manager secret named by
// D1BACKUP_SECRET_ARN (or, without one, from the environment as for the
// CLI). A failure
// is not fatal here: every invocation then returns it as a ConfigError, which
// the workflow reports with its cause instead of an opaque init failure.
func Load(ctx context.Context, opts Options) *Handlers {
	h, err := load(ctx, opts)
	var ce *backup.ConfigError
	switch {
	case errors.As(err, &ce):
		return &Handlers{initErr: ce}
	case err != nil:
		return &Handlers{initErr: &backup.ConfigError{Msg: err.Error()}}
	}
	return h
}

// Options say what a function needs.
type Options struct {
	// Store opens the R2 bucket (only the store step writes).
	Store bool
	// Version goes into manifests.
	Version string
	// Log receives JSON log lines; os.Stdout (CloudWatch Logs) if nil.
	Log io.Writer
	// BoundMemory sets the runtime's memory limit for streaming uploads
	// (the store step; see config.BoundMemory).
	BoundMemory bool
}

func load(ctx context.Context, opts Options) (*Handlers, error) {
	getenv := os.Getenv
	if arn := os.Getenv(config.EnvSecretARN); arn != "" {
		secret, err := readSecret(ctx, arn)
		if err != nil {
			return nil, err
		}
		getenv = func(k string) string {
			if v, ok := secret[k]; ok && v != "" {
				return v
			}
			return os.Getenv(k)
		}
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	logTo := cmp.Or[io.Writer](opts.Log, os.Stdout)
	if opts.BoundMemory {
		cfg.BoundMemory(os.Getenv)
	}
	version := cmp.Or(opts.Version, "dev")
	d := Deps{
		Config:     cfg,
		HTTPClient: cfg.HTTPClient(),
		Metrics:    logTo,
		Backup:     cfg.Backup(version),
	}
	d.Backup.Logger = slog.New(slog.NewJSONHandler(logTo, nil))
	if opts.Store {
		if !cfg.HasR2() {
			return nil, fmt.Errorf("%s is not set", config.EnvR2Bucket)
		}
		if d.Store, err = cfg.OpenDest("", d.HTTPClient); err != nil {
			return nil, err
		}
	}
	return New(d)
}

// readSecret fetches the credentials secret: a JSON object whose keys are
// the environment variable names it stands in for.
func readSecret(ctx context.Context, arn string) (map[string]string, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	out, err := secretsmanager.NewFromConfig(awsCfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn})
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", arn, err)
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("secret %s has no string value", arn)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(*out.SecretString), &m); err != nil {
		// The JSON error could quote the secret's bytes: keep it out.
		return nil, fmt.Errorf("secret %s is not a JSON object of strings (keys %s, %s, %s)", arn, config.EnvAPIToken, config.EnvR2AccessKey, config.EnvR2Secret)
	}
	return m, nil
}
