package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/retention"
)

// Config is every setting of d1backup, whatever front door it came through
// (environment, CLI flags, CDK context). Values are typed and validated by
// the settings table (settings.go); libraries receive them as they are.
type Config struct {
	// Cloudflare.
	AccountID  string
	APIToken   string
	APIBaseURL string

	// Destination.
	R2AccessKeyID     string
	R2SecretAccessKey string
	R2Bucket          string
	R2Endpoint        string
	Prefix            string
	// R2Jurisdiction is the bucket's jurisdiction (default, eu, fedramp).
	R2Jurisdiction string
	// AllowCrossJurisdiction lets a database with a jurisdiction be backed
	// up into a bucket outside it.
	AllowCrossJurisdiction bool

	// Backup.
	Compression  string
	Recipients   []string
	PollInterval time.Duration
	// PollIntervalMax caps the workflow's backing-off poll interval (a
	// poll interval above it is not backed off).
	PollIntervalMax time.Duration
	ExportTimeout   time.Duration
	MaxRestarts     int
	PartSize        int64
	PartConcurrency int
	// Method is how databases are read: export, query or auto.
	Method string
	// StoreMargin and CheckpointInterval shape the resumable store step.
	StoreMargin        time.Duration
	CheckpointInterval time.Duration

	// Selection: which databases a run (workflow or CLI --all) backs up,
	// and how many at once.
	Databases   []string
	Include     []string
	Exclude     []string
	Concurrency int

	// Retention and verification.
	Retention retention.Policy
	// VerifyMaxBytes bounds the dumps the workflow verifies; 0 disables it.
	VerifyMaxBytes int64

	// Deployment (CDK context only).
	Schedule        string
	AlarmEmail      string
	AssetDir        string
	StaleAfterHours int
	// CloudflareSecretARN and R2SecretARN import existing secrets instead
	// of creating them; SecretsKMSKeyARN is the customer managed key they
	// are encrypted with, if any.
	CloudflareSecretARN string
	R2SecretARN         string
	SecretsKMSKeyARN    string
	// APIRequestBudget is how many Cloudflare API requests per 5 minutes
	// the scheduled run may make (Cloudflare allows 1200 per account).
	APIRequestBudget int

	// SealKey seals signed dump URLs in workflow state (Lambda only; from
	// its own secret).
	SealKey string

	// StateMachineARN is the deployed run state machine (CLI only).
	StateMachineARN string
}

// Defaults returns the configuration with every setting at its default.
func Defaults() Config {
	var c Config
	for _, s := range Settings() {
		if s.Default == "" {
			continue
		}
		if err := s.set(&c, s.Default, 0); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", s.Name, err))
		}
	}
	return c
}

// Validate checks what no single setting can: combinations.
func (c Config) Validate() error {
	if err := c.Retention.Validate(); err != nil {
		return err
	}
	if j := c.BucketJurisdiction(); c.R2Endpoint != "" && c.R2Jurisdiction != backup.JurisdictionDefault && j != c.R2Jurisdiction {
		return fmt.Errorf("%s=%s, but %s %s is not an endpoint of that jurisdiction (no .%s. in its host)", EnvR2Jurisdiction, c.R2Jurisdiction, EnvR2Endpoint, c.R2Endpoint, c.R2Jurisdiction)
	}
	return nil
}

// RequireD1 checks the settings the D1 API needs.
func (c Config) RequireD1() error {
	switch {
	case c.AccountID == "":
		return fmt.Errorf("%s is not set: the Cloudflare account ID (32 hex characters) owning the databases", EnvAccountID)
	case c.APIToken == "":
		return fmt.Errorf("%s is not set: an API token with Account · D1 · Edit", EnvAPIToken)
	}
	return nil
}

// HasR2 reports whether an R2 bucket is configured.
func (c Config) HasR2() bool { return c.R2Bucket != "" }

// RequireR2 checks the settings R2 needs.
func (c Config) RequireR2() error {
	switch {
	case c.R2AccessKeyID == "":
		return fmt.Errorf("%s is not set: the R2 API token's access key ID", EnvR2AccessKey)
	case c.R2SecretAccessKey == "":
		return fmt.Errorf("%s is not set: the R2 API token's secret access key", EnvR2Secret)
	case c.Endpoint() == "":
		return fmt.Errorf("%s is not set and there is no %s to derive it from", EnvR2Endpoint, EnvAccountID)
	}
	return nil
}

// Endpoint is the R2 S3 endpoint: R2_ENDPOINT, or the account's endpoint
// in the bucket's jurisdiction
// (https://<account>[.<jurisdiction>].r2.cloudflarestorage.com).
func (c Config) Endpoint() string {
	if c.R2Endpoint != "" {
		return c.R2Endpoint
	}
	if c.AccountID == "" {
		return ""
	}
	if c.R2Jurisdiction != "" && c.R2Jurisdiction != backup.JurisdictionDefault {
		return "https://" + c.AccountID + "." + c.R2Jurisdiction + ".r2.cloudflarestorage.com"
	}
	return "https://" + c.AccountID + ".r2.cloudflarestorage.com"
}

// BucketJurisdiction is the jurisdiction of the buckets the endpoint
// reaches: with R2_ENDPOINT, read from its host (.eu. or .fedramp. in it;
// any other host, a test server among them, is default); else
// R2_JURISDICTION, which chose the endpoint.
func (c Config) BucketJurisdiction() string {
	if c.R2Endpoint == "" {
		if c.R2Jurisdiction == "" {
			return backup.JurisdictionDefault
		}
		return c.R2Jurisdiction
	}
	host := c.R2Endpoint
	if u, err := url.Parse(c.R2Endpoint); err == nil && u.Host != "" {
		host = u.Hostname()
	}
	host = "." + strings.ToLower(host) + "."
	for _, j := range backup.Jurisdictions() {
		if j != backup.JurisdictionDefault && strings.Contains(host, "."+j+".") {
			return j
		}
	}
	return backup.JurisdictionDefault
}

// Location is the time zone retention counts days in.
func (c Config) Location() *time.Location {
	if c.Retention.Location != nil {
		return c.Retention.Location
	}
	return time.UTC
}

// errorsJoin joins errors, one per line.
func errorsJoin(errs []error) error { return errors.Join(errs...) }
