package step_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/step"
)

const (
	tokenARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:d1backup-cloudflare-AbCdEf"
	otherARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:d1backup-r2-GhIjKl"
)

// secretsManager answers GetSecretValue (awsJson1_1) from a map of secret
// strings the test may change, and counts the reads. No Secrets Manager runs
// on these machines; this checks the requests the functions make and that
// they use what comes back.
type secretsManager struct {
	mu      sync.Mutex
	secrets map[string]string
	reads   map[string]int
}

func (s *secretsManager) set(arn, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[arn] = value
}

func (s *secretsManager) readsOf(arn string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[arn]
}

func startSecretsManager(t *testing.T, secrets map[string]string) *secretsManager {
	t.Helper()
	sm := &secretsManager{secrets: secrets, reads: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ SecretId string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		sm.mu.Lock()
		value, ok := sm.secrets[req.SecretId]
		sm.reads[req.SecretId]++
		sm.mu.Unlock()
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || !ok {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"ResourceNotFoundException","message":"unexpected request"}`)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		b, _ := json.Marshal(map[string]string{"ARN": req.SecretId, "Name": "d1backup", "SecretString": value})
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	return sm
}

func tokenSecret(token string) string {
	b, _ := json.Marshal(map[string]string{"CLOUDFLARE_API_TOKEN": token})
	return string(b)
}

func discover(h *step.Handlers) (step.RunState, error) {
	return h.Discover(context.Background(), step.Invocation[step.RunState]{Execution: step.Execution{Name: "run-1"}, MaxConcurrency: 4})
}

func TestLoadReadsTheSecret(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	emu.MustCreate(t, "orders", "CREATE TABLE t(x);")
	for _, tt := range []struct {
		name    string
		secret  string
		wantErr string
	}{
		{"token from the secret", tokenSecret(emu.Token()), ""},
		{"not JSON", "s3cr3t-value", "is not a JSON object of strings"},
		{"wrong token", tokenSecret("s3cr3t-value-of-40-characters-000000000"), "rejected the API token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			startSecretsManager(t, map[string]string{tokenARN: tt.secret})
			t.Setenv("D1BACKUP_SECRET_ARNS", tokenARN)
			t.Setenv("CLOUDFLARE_ACCOUNT_ID", emu.AccountID())
			t.Setenv("CLOUDFLARE_API_BASE_URL", emu.BaseURL)
			t.Setenv("CLOUDFLARE_API_TOKEN", "") // only the secret holds it
			h := step.Load(context.Background(), step.Options{Cloudflare: true, Log: io.Discard})
			out, err := discover(h)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Discover: %v", err)
				}
				if out.Total != 1 || len(out.Pages) != 1 || out.RunKey != "run-1" {
					t.Errorf("Discover = %+v, want the one database on one page", out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Discover error %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cr3t-value") {
				t.Errorf("error %q shows the secret's value", err)
			}
			var ce *backup.ConfigError
			if tt.name == "not JSON" && !errors.As(err, &ce) {
				t.Errorf("error %T, want a ConfigError the workflow fails on", err)
			}
		})
	}
}

// A secret filled in or rotated after a failure takes effect at the next
// invocation of the same warm function, without a cold start; a working
// secret is not read again on every invocation.
func TestSecretReadAgainAfterAFailure(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	emu.MustCreate(t, "orders", "CREATE TABLE t(x);")
	sm := startSecretsManager(t, map[string]string{tokenARN: `{"CLOUDFLARE_API_TOKEN":""}`})
	t.Setenv("D1BACKUP_SECRET_ARNS", tokenARN)
	t.Setenv("CLOUDFLARE_ACCOUNT_ID", emu.AccountID())
	t.Setenv("CLOUDFLARE_API_BASE_URL", emu.BaseURL)
	t.Setenv("CLOUDFLARE_API_TOKEN", "")
	h := step.Load(context.Background(), step.Options{Cloudflare: true, Log: io.Discard})

	// Deployed, not yet filled in: the function says so, and keeps nothing.
	if _, err := discover(h); err == nil || !strings.Contains(err.Error(), "CLOUDFLARE_API_TOKEN is not set") {
		t.Fatalf("empty secret: %v, want a ConfigError naming CLOUDFLARE_API_TOKEN", err)
	}
	// Filled in with a wrong token: rejected.
	sm.set(tokenARN, tokenSecret("wrong-token-of-forty-characters-00000000"))
	var auth *d1.AuthError
	if _, err := discover(h); !errors.As(err, &auth) {
		t.Fatalf("wrong token: %v, want an AuthError", err)
	}
	// Fixed: the next invocation reads the secret again and works.
	sm.set(tokenARN, tokenSecret(emu.Token()))
	for i := 0; i < 3; i++ {
		if _, err := discover(h); err != nil {
			t.Fatalf("fixed token, invocation %d: %v", i, err)
		}
	}
	if got, want := sm.readsOf(tokenARN), 3; got != want {
		t.Errorf("secret read %d times, want %d (once per failure, then kept)", got, want)
	}
}

// Each function reads only the secrets in its D1BACKUP_SECRET_ARNS.
func TestLoadReadsOnlyItsSecrets(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	emu.MustCreate(t, "orders", "CREATE TABLE t(x);")
	sm := startSecretsManager(t, map[string]string{tokenARN: tokenSecret(emu.Token()), otherARN: `{"R2_SECRET_ACCESS_KEY":"r2-s3cr3t"}`})
	t.Setenv("D1BACKUP_SECRET_ARNS", tokenARN)
	t.Setenv("CLOUDFLARE_ACCOUNT_ID", emu.AccountID())
	t.Setenv("CLOUDFLARE_API_BASE_URL", emu.BaseURL)
	t.Setenv("CLOUDFLARE_API_TOKEN", "")
	if _, err := discover(step.Load(context.Background(), step.Options{Cloudflare: true, Log: io.Discard})); err != nil {
		t.Fatal(err)
	}
	if sm.readsOf(tokenARN) != 1 || sm.readsOf(otherARN) != 0 {
		t.Errorf("reads: token secret %d, other %d; want 1 and 0", sm.readsOf(tokenARN), sm.readsOf(otherARN))
	}
}
