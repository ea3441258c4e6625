// Package testenv starts real servers for integration tests. StartS3 runs
// versitygw, an S3 gateway over a folder, over HTTPS with R2's region "auto",
// so tests talk to the S3 API the way production talks to R2.
package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// InstallHint says how to get the server binary; skip messages repeat it.
const InstallHint = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// ErrNoVersityGW is returned by StartS3 when the versitygw binary is missing.
var ErrNoVersityGW = errors.New("versitygw not found ($VERSITYGW, PATH, $(go env GOPATH)/bin, /root/go/bin); install it with: " + InstallHint)

// S3 is a running S3 server.
type S3 struct {
	Endpoint        string
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	// CAFile is a PEM bundle of the system CAs plus the server's certificate.
	// Env hands it to subprocesses as SSL_CERT_FILE and AWS_CA_BUNDLE.
	CAFile string
	// HTTPClient trusts the server's certificate.
	HTTPClient *http.Client

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *bytes.Buffer
	once   sync.Once
}

// StartS3 starts versitygw with the posix backend in a fresh temporary
// folder, listening on a free port of 127.0.0.1 over HTTPS with a
// certificate generated for this run, and waits until it answers.
func StartS3() (*S3, error) {
	bin, err := findVersityGW()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "d1backup-s3-")
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	s, err := startS3(bin, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func startS3(bin, dir string) (*S3, error) {
	certPEM, keyPEM, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("testenv: generate certificate: %w", err)
	}
	certFile := filepath.Join(dir, "cert.pem")
	keyFile := filepath.Join(dir, "key.pem")
	caFile := filepath.Join(dir, "ca-bundle.pem")
	// System CAs first, so subprocesses that use this bundle instead of the
	// system one can still reach the internet if they need to.
	bundle, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if len(bundle) > 0 && !bytes.HasSuffix(bundle, []byte("\n")) {
		bundle = append(bundle, '\n')
	}
	bundle = append(bundle, certPEM...)
	for name, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, caFile: bundle} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 32
	s := &S3{
		Region:          "auto",
		AccessKeyID:     "d1backuptest",
		SecretAccessKey: randomHex(20),
		CAFile:          caFile,
		HTTPClient:      &http.Client{Transport: tr},
		dir:             dir,
	}

	// The free port is found by binding and releasing it, so another process
	// may take it first: try a few times.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
		addr := net.JoinHostPort("127.0.0.1", port)
		s.Endpoint = "https://" + addr
		s.stderr = new(bytes.Buffer)
		s.exited = make(chan struct{})
		cmd := exec.Command(bin,
			"--port", addr,
			"--region", s.Region,
			"--cert", certFile,
			"--key", keyFile,
			"--health", "/health",
			"--quiet",
			"--keep-alive", // as R2 does; otherwise every request pays a TLS handshake
			"posix", root,
		)
		// Credentials through the environment keep the secret out of the
		// process list.
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKeyID, "ROOT_SECRET_KEY="+s.SecretAccessKey)
		cmd.Stdout = s.stderr
		cmd.Stderr = s.stderr
		cmd.SysProcAttr = sysProcAttr()
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("testenv: start %s: %w", bin, err)
		}
		s.cmd = cmd
		go func(done chan struct{}) { cmd.Wait(); close(done) }(s.exited)
		if lastErr = s.waitHealthy(15 * time.Second); lastErr == nil {
			return s, nil
		}
		s.kill()
	}
	return nil, lastErr
}

func (s *S3) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequest(http.MethodGet, s.Endpoint+"/health", nil)
		resp, err := s.HTTPClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health: %s", resp.Status)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("testenv: versitygw exited: %s", strings.TrimSpace(s.stderr.String()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: versitygw not healthy after %s: %v", timeout, err)
		}
	}
}

func (s *S3) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// Stop kills the server and removes its folder. It is safe to call twice.
func (s *S3) Stop() {
	s.once.Do(func() {
		s.kill()
		os.RemoveAll(s.dir)
	})
}

// Client returns an S3 client for the server, configured like the r2 store.
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     s.Region,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
		HTTPClient:                 s.HTTPClient,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

var bucketSeq atomic.Int64

var notBucketChars = regexp.MustCompile(`[^a-z0-9-]+`)

// NewBucket creates an empty bucket named after the test. It goes away with
// the server.
func (s *S3) NewBucket(t testing.TB) string {
	t.Helper()
	name := strings.Trim(notBucketChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	suffix := fmt.Sprintf("-%d-%s", bucketSeq.Add(1), randomHex(3))
	if max := 63 - len(suffix); len(name) > max {
		name = strings.TrimRight(name[:max], "-")
	}
	if name == "" {
		name = "t"
	}
	name += suffix
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testenv: create bucket %q: %v", name, err)
	}
	return name
}

// Env is the environment a d1backup subprocess needs to use bucket on this
// server (append it to os.Environ()).
func (s *S3) Env(bucket string) []string {
	return []string{
		"R2_ENDPOINT=" + s.Endpoint,
		"R2_ACCESS_KEY_ID=" + s.AccessKeyID,
		"R2_SECRET_ACCESS_KEY=" + s.SecretAccessKey,
		"R2_BUCKET=" + bucket,
		"SSL_CERT_FILE=" + s.CAFile,
		"AWS_CA_BUNDLE=" + s.CAFile,
	}
}

var shared struct {
	mu  sync.Mutex
	s3  *S3
	err error
}

// RequireS3 returns the test binary's shared server, starting it on first
// use. Without versitygw the test fails when CI=true (integration tests must
// not pass silently in CI) and is skipped otherwise. Call Main from TestMain
// so the server is stopped at the end.
func RequireS3(t testing.TB) *S3 {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s3 == nil && shared.err == nil {
		shared.s3, shared.err = StartS3()
	}
	switch {
	case shared.err == nil:
		return shared.s3
	case errors.Is(shared.err, ErrNoVersityGW) && os.Getenv("CI") != "true":
		t.Skipf("skipping S3 integration test: %v", shared.err)
	default:
		t.Fatalf("testenv: %v", shared.err)
	}
	return nil
}

// Main runs the tests and then stops the shared server, so no process
// outlives the test binary. Use it as TestMain(m) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	if shared.s3 != nil {
		shared.s3.Stop()
	}
	shared.mu.Unlock()
	os.Exit(code)
}

func findVersityGW() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w: $VERSITYGW=%q is not an executable file", ErrNoVersityGW, p)
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.SplitList(gp)...)
	} else if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		dirs = append(dirs, filepath.SplitList(strings.TrimSpace(string(out)))...)
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go"))
	}
	dirs = append(dirs, "/root/go")
	for _, d := range dirs {
		if p := filepath.Join(d, "bin", "versitygw"); isExecutable(p) {
			return p, nil
		}
	}
	return "", ErrNoVersityGW
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func selfSignedCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "d1backup test S3"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
