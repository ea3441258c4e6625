package step_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/step"
)

const secretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:d1backup-AbCdEf"

// secretsManager answers GetSecretValue (awsJson1_1) with a fixed secret
// string. No Secrets Manager runs on these machines; this checks the request
// the functions make and that they use what comes back.
func secretsManager(t *testing.T, secretString string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || !strings.Contains(string(body), secretARN) {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"ResourceNotFoundException","message":"unexpected request"}`)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		io.WriteString(w, `{"ARN":"`+secretARN+`","Name":"d1backup","SecretString":`+secretString+`}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestLoadReadsTheSecret(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	emu.MustCreate(t, "orders", "CREATE TABLE t(x);")
	for _, tt := range []struct {
		name    string
		secret  string
		wantErr string
	}{
		{"token from the secret", `"{\"CLOUDFLARE_API_TOKEN\":\"` + emu.Token() + `\",\"R2_ACCESS_KEY_ID\":\"k\",\"R2_SECRET_ACCESS_KEY\":\"s3cr3t-value\"}"`, ""},
		{"not JSON", `"s3cr3t-value"`, "is not a JSON object of strings"},
		{"wrong token", `"{\"CLOUDFLARE_API_TOKEN\":\"s3cr3t-value-of-40-characters-000000000\"}"`, "rejected the API token"},
		{"token too short", `"{\"CLOUDFLARE_API_TOKEN\":\"s3cr3t-value\"}"`, "too short to be real credentials"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("D1BACKUP_SECRET_ARN", secretARN)
			t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", secretsManager(t, tt.secret))
			t.Setenv("AWS_REGION", "us-east-1")
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
			t.Setenv("AWS_CONFIG_FILE", "/dev/null")
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
			t.Setenv("CLOUDFLARE_ACCOUNT_ID", emu.AccountID())
			t.Setenv("CLOUDFLARE_API_BASE_URL", emu.BaseURL)
			t.Setenv("CLOUDFLARE_API_TOKEN", "") // only the secret holds it
			h := step.Load(context.Background(), step.Options{Log: io.Discard})
			out, err := h.Discover(context.Background(), struct{}{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Discover: %v", err)
				}
				if len(out.Databases) != 1 || out.Databases[0].DatabaseName != "orders" {
					t.Errorf("Discover = %+v, want the one database", out)
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
