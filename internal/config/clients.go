package config

import (
	"crypto/tls"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/dest"
	"github.com/d1backup/d1backup/internal/querydump"
	"github.com/d1backup/d1backup/internal/seal"
	"github.com/d1backup/d1backup/internal/store"
)

// RunRetries bounds how often one in-process run (the CLI) retries a
// retryable failure; the workflow's retries are its Retry blocks.
const RunRetries = 3

// D1 returns the D1 client's configuration.
func (c Config) D1(hc *http.Client) d1.Config {
	cfg := d1.NewConfig(c.AccountID, c.APIToken, c.APIBaseURL)
	cfg.HTTPClient = hc
	return cfg
}

// D1Client builds the D1 API client.
func (c Config) D1Client(hc *http.Client) (*d1.Client, error) {
	if err := c.RequireD1(); err != nil {
		return nil, err
	}
	return d1.New(c.D1(hc))
}

// ManifestWait is how long a store step that finds its dump without a
// manifest waits for a concurrent backup of the same export to write it.
const ManifestWait = 10 * time.Second

// Backup returns the pipeline's configuration, for the default destination
// (see Residency for another). Its sealer keeps the secrets a store
// checkpoint holds (see Sealer).
func (c Config) Backup(toolVersion string) backup.Config {
	b := backup.Config{
		Compression:            c.Compression,
		Recipients:             c.Recipients,
		PollInterval:           c.PollInterval,
		ExportTimeout:          c.ExportTimeout,
		MaxRestarts:            c.MaxRestarts,
		MaxRetries:             RunRetries,
		ToolVersion:            toolVersion,
		Method:                 c.Method,
		Query:                  querydump.DefaultOptions(),
		DestJurisdiction:       c.Residency(""),
		AllowCrossJurisdiction: c.AllowCrossJurisdiction,
		PartSize:               c.PartSize,
		PartConcurrency:        c.PartConcurrency,
		StopMargin:             c.StoreMargin,
		CheckpointInterval:     c.CheckpointInterval,
		ManifestWait:           ManifestWait,
	}
	if s := c.Sealer(); s != nil {
		b.Sealer = s // a nil *seal.Sealer would be a non-nil interface
	}
	return b
}

// Sealer seals the secrets that pass through places others can read
// (workflow state, a checkpoint in the bucket): with the deployment's
// sealing key (D1BACKUP_SEAL_KEY, Lambda) when there is one, else with a key
// derived from the credentials (the CLI); nil without either.
func (c Config) Sealer() *seal.Sealer {
	material := []string{c.SealKey}
	if c.SealKey == "" {
		if c.APIToken == "" {
			return nil
		}
		material = []string{c.APIToken, c.AccountID}
	}
	s, err := seal.New(material...)
	if err != nil {
		return nil
	}
	return s
}

// Residency is the jurisdiction of destination d (DefaultDest when empty)
// for the data residency check: the bucket's for a bucket, "" for a folder.
func (c Config) Residency(d string) string {
	if d == "" {
		d = c.DefaultDest()
	}
	if l, err := dest.Parse(d); err != nil || l.Scheme == "" {
		return ""
	}
	return c.BucketJurisdiction()
}

// Selection is which databases a run backs up.
func (c Config) Selection() backup.Selection {
	return backup.Selection{Databases: c.Databases, Include: c.Include, Exclude: c.Exclude}
}

// DestOptions are the options destinations are opened with.
func (c Config) DestOptions(hc *http.Client) dest.Options {
	return dest.Options{
		Endpoint: c.Endpoint(), AccessKeyID: c.R2AccessKeyID, SecretAccessKey: c.R2SecretAccessKey,
		PartSize: c.PartSize, PartConcurrency: c.PartConcurrency, HTTPClient: hc,
	}
}

// DefaultDest is where backups go when no destination is given: the
// configured bucket, else a local folder.
func (c Config) DefaultDest() string {
	if c.HasR2() {
		return strings.TrimSuffix("r2://"+c.R2Bucket+"/"+strings.TrimPrefix(c.Prefix, "/"), "/")
	}
	return DefaultLocalDir
}

// OpenDest opens a destination (DefaultDest when d is empty). A bucket
// destination needs the R2 credentials.
func (c Config) OpenDest(d string, hc *http.Client) (store.Store, error) {
	if d == "" {
		d = c.DefaultDest()
	}
	l, err := dest.Parse(d)
	if err != nil {
		return nil, err
	}
	if l.Scheme != "" {
		if err := c.RequireR2(); err != nil {
			return nil, err
		}
	}
	return dest.OpenLocation(l, c.DestOptions(hc))
}

// HTTPClient is the client for R2 uploads: it keeps enough idle connections
// for every part in flight (http.DefaultClient keeps 2 per host, so parts
// beyond that paid a new TLS handshake each), and speaks HTTP/1.1 only, so
// that each part in flight has its own TCP connection, as aws-cli and rclone
// do: over HTTP/2 all parts share one connection and its flow-control
// window, and the store step was about 15% slower through an HTTPS proxy
// (scripts/bench).
func (c Config) HTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = c.PartConcurrency + 2
	// Protocols alone is not enough: the clone may carry the default
	// transport's ALPN list with h2 in it.
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	} else {
		t.TLSClientConfig = t.TLSClientConfig.Clone()
	}
	t.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return &http.Client{Transport: t}
}

// BoundMemory sets the Go runtime's soft memory limit for the store step,
// unless GOMEMLIMIT is set: the uploader holds concurrency + 2 parts, and
// without a limit garbage from a long upload lets RSS grow with the dump
// size (scripts/bench: 134 MiB and growing vs 116 MiB flat at 16 MiB × 4).
func (c Config) BoundMemory(getenv func(string) string) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(int64(c.PartConcurrency+2)*c.PartSize + 16<<20)
}
