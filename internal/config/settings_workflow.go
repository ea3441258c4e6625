package config

import (
	"fmt"
	"regexp"
	"time"
)

// Settings of the deployed workflow (CDK context and the Lambda functions),
// appended to the table in settings.go.

var (
	secretARNRe = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$`)
	kmsKeyARNRe = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$`)
)

func secretARN(v any) error {
	if s := v.(string); s != "" && !secretARNRe.MatchString(s) {
		return fmt.Errorf("must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)")
	}
	return nil
}

func init() { table = append(table, workflowSettings...) }

var workflowSettings = []Setting{
	{Name: "poll-interval-max", Env: EnvPollIntervalMax, Context: "pollIntervalMaxSeconds", Kind: Duration, Lambda: true,
		Default: "60s", Min: int64(time.Second), Max: int64(10 * time.Minute),
		Help:  "the workflow's poll interval doubles after each poll up to this",
		Field: func(c *Config) any { return &c.PollIntervalMax }},
	{Name: "api-request-budget", Context: "apiRequestBudget", Kind: Int, Default: "600", Min: 100, Max: 1200,
		Help:  "Cloudflare API requests per 5 minutes the scheduled run may make (Cloudflare allows 1200 for the account)",
		Field: func(c *Config) any { return &c.APIRequestBudget }},
	{Name: "seal-key", Env: EnvSealKey, Kind: String, Secret: true,
		Help: "key sealing signed dump URLs in workflow state (the stack generates it)",
		Check: func(v any) error {
			if s := v.(string); s != "" && len(s) < 32 {
				return fmt.Errorf("must be at least 32 characters")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.SealKey }},
	{Name: "cloudflare-secret-arn", Context: "cloudflareSecretArn", Kind: String, Check: secretARN,
		Help:  "use this existing secret (JSON with " + EnvAPIToken + ") instead of creating one",
		Field: func(c *Config) any { return &c.CloudflareSecretARN }},
	{Name: "r2-secret-arn", Context: "r2SecretArn", Kind: String, Check: secretARN,
		Help:  "use this existing secret (JSON with " + EnvR2AccessKey + " and " + EnvR2Secret + ") instead of creating one",
		Field: func(c *Config) any { return &c.R2SecretARN }},
	{Name: "secrets-kms-key-arn", Context: "secretsKmsKeyArn", Kind: String,
		Help: "customer managed KMS key the imported secrets are encrypted with (the functions get kms:Decrypt on it)",
		Check: func(v any) error {
			if s := v.(string); s != "" && !kmsKeyARNRe.MatchString(s) {
				return fmt.Errorf("must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)")
			}
			return nil
		},
		Field: func(c *Config) any { return &c.SecretsKMSKeyARN }},
}
