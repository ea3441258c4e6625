package step

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/d1backup/d1backup/internal/config"
)

// SecretTTL is how long a function keeps the secrets it read: a secret
// filled in after the deploy, or rotated, takes effect within this time
// without a cold start (and at once after a failure that invalidates it).
const SecretTTL = 5 * time.Minute

// secrets reads a function's credentials secrets: each a JSON object whose
// keys are the environment variables it stands in for. Values are kept for
// SecretTTL; a failed read is never kept (the next invocation reads again),
// and invalidate drops the values after a failure that may be theirs (a
// rejected token, refused R2 keys, a sealed URL that no longer opens).
type secrets struct {
	arns []string
	ttl  time.Duration
	now  func() time.Time
	read func(ctx context.Context, arn string) (map[string]string, error)

	mu     sync.Mutex
	values map[string]string
	at     time.Time
}

func newSecrets(arns string, now func() time.Time) *secrets {
	s := &secrets{ttl: SecretTTL, now: now, read: readSecret}
	for _, a := range strings.Split(arns, ",") {
		if a = strings.TrimSpace(a); a != "" {
			s.arns = append(s.arns, a)
		}
	}
	return s
}

// get returns the secrets' values merged (nil without secrets).
func (s *secrets) get(ctx context.Context) (map[string]string, error) {
	if len(s.arns) == 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values != nil && s.now().Sub(s.at) < s.ttl {
		return s.values, nil
	}
	merged := map[string]string{}
	for _, arn := range s.arns {
		m, err := s.read(ctx, arn)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			merged[k] = v
		}
	}
	s.values, s.at = merged, s.now()
	return merged, nil
}

func (s *secrets) invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values = nil
}

// fingerprint identifies a set of secret values without holding them.
func fingerprint(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%q=%q;", k, m[k])
	}
	return string(h.Sum(nil))
}

// readSecret fetches one secret: a JSON object whose keys are the
// environment variable names it stands in for.
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
		return nil, fmt.Errorf("secret %s is not a JSON object of strings (keys such as %s, %s, %s)", arn, config.EnvAPIToken, config.EnvR2AccessKey, config.EnvR2Secret)
	}
	return m, nil
}
