package r2_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/d1backup/d1backup/internal/store"
	"github.com/d1backup/d1backup/internal/store/r2"
)

// httpErr is an S3 error as the SDK returns it: an API error inside an
// HTTP response error, wrapped with the operation.
func httpErr(status int, code string) error {
	var api error = &smithy.GenericAPIError{Code: code, Message: "test"}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      api,
		},
	}}
}

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"500", httpErr(500, "InternalError"), true},
		{"502", httpErr(502, ""), true},
		{"503 SlowDown", httpErr(503, "SlowDown"), true},
		{"429", httpErr(429, "TooManyRequests"), true},
		{"409 ConditionalRequestConflict", httpErr(409, "ConditionalRequestConflict"), true},
		{"400", httpErr(400, "InvalidArgument"), false},
		{"403", httpErr(403, "AccessDenied"), false},
		{"403 SignatureDoesNotMatch", httpErr(403, "SignatureDoesNotMatch"), false},
		{"404", httpErr(404, "NoSuchKey"), false},
		{"412", httpErr(412, "PreconditionFailed"), false},
		{"ErrExists", fmt.Errorf("r2: put object %q: %w", "k", store.ErrExists), false},
		{"ErrNotFound", fmt.Errorf("r2: get object %q: %w", "k", store.ErrNotFound), false},
		{"connection refused", &url.Error{Op: "Put", URL: "https://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"truncated", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"deadline", fmt.Errorf("r2: put object: %w", context.DeadlineExceeded), true},
		{"cancelled", fmt.Errorf("r2: put object: %w", context.Canceled), false},
		{"untrusted certificate", &url.Error{Op: "Get", URL: "https://x", Err: &tls.CertificateVerificationError{Err: errors.New("unknown authority")}}, false},
		{"validation", errors.New(`invalid key "": empty`), false},
	} {
		if got := r2.IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
