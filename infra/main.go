// Command infra is the d1backup CDK app: `cdk synth` / `cdk deploy` run it
// (see cdk.json). It is the only place that reads CDK context.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/step"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "d1backup:", err)
		os.Exit(1)
	}
}

func run() error {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	cfg, err := configFromContext(app)
	if err != nil {
		return fmt.Errorf("invalid CDK context (cdk.json or -c key=value):\n%w", err)
	}
	// Code_FromAsset fails with a cryptic jsii error on a missing directory.
	for _, s := range step.Registry {
		if _, err := os.Stat(filepath.Join(cfg.AssetDir, s.Dir(), "bootstrap")); err != nil {
			return fmt.Errorf("lambda %s not built (%v): run scripts/build-lambdas, or set context \"assetDir\"", s.Dir(), err)
		}
	}
	NewBackupStack(app, "D1Backup", &BackupStackProps{
		StackProps: awscdk.StackProps{
			Description: jsii.String("d1backup: scheduled backups of Cloudflare D1 databases into R2"),
		},
		Config: cfg,
	})
	app.Synth(nil)
	return nil
}

// configFromContext parses the app's context: cdk.json's "context" merged
// with -c key=value by the CDK CLI, passed to the app in CDK_CONTEXT_JSON.
func configFromContext(app awscdk.App) (config.Config, error) {
	return ParseConfig(func(key string) any { return app.Node().TryGetContext(jsii.String(key)) })
}
