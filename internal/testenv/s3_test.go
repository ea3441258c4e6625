package testenv_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/d1backup/d1backup/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestS3(t *testing.T) {
	s := testenv.RequireS3(t)
	if got, want := s.Region, "auto"; got != want {
		t.Errorf("Region = %q, want %q", got, want)
	}
	if !strings.HasPrefix(s.Endpoint, "https://127.0.0.1:") {
		t.Errorf("Endpoint = %q, want https://127.0.0.1:PORT", s.Endpoint)
	}
	b1, b2 := s.NewBucket(t), s.NewBucket(t)
	if b1 == b2 {
		t.Fatalf("NewBucket returned %q twice", b1)
	}
	ctx := context.Background()
	c := s.Client()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b1), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
		t.Fatal(err)
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 0 {
		t.Errorf("new bucket %q holds %d objects", b2, len(out.Contents))
	}

	// A client that does not trust the test certificate must be refused:
	// the server really is HTTPS.
	if _, err := http.Get(s.Endpoint + "/health"); err == nil {
		t.Error("GET with the default client succeeded; want a certificate error")
	}

	env := map[string]string{}
	for _, kv := range s.Env(b1) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for _, k := range []string{"R2_ENDPOINT", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_BUCKET", "SSL_CERT_FILE", "AWS_CA_BUNDLE"} {
		if env[k] == "" {
			t.Errorf("Env lacks %s", k)
		}
	}
	if got, want := env["R2_BUCKET"], b1; got != want {
		t.Errorf("R2_BUCKET = %q, want %q", got, want)
	}

	// A subprocess given SSL_CERT_FILE trusts the server (Go and curl read it).
	if curl, err := exec.LookPath("curl"); err == nil {
		cmd := exec.Command(curl, "-sSf", "--cacert", s.CAFile, s.Endpoint+"/health")
		cmd.Env = append(os.Environ(), s.Env(b1)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("curl with CAFile: %v: %s", err, out)
		}
	}
}

func TestStopKillsServer(t *testing.T) {
	testenv.RequireS3(t) // skip or fail like the others when versitygw is missing
	s, err := testenv.StartS3()
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Stop() // twice is fine
	if _, err := s.HTTPClient.Get(s.Endpoint + "/health"); err == nil {
		t.Error("server still answers after Stop")
	}
	if _, err := os.Stat(s.CAFile); !os.IsNotExist(err) {
		t.Errorf("CAFile %s left behind after Stop (err %v)", s.CAFile, err)
	}
}
