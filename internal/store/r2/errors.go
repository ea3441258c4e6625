package r2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/d1backup/d1backup/internal/store"
)

// httpStatus is the HTTP status of the response behind err, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// hasCode reports whether err is an S3 error with one of codes.
func hasCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

// classify makes err wrap store.ErrNotFound when S3 said the object is
// absent, and store.ErrTransient when a later retry may succeed. A missing
// bucket is a configuration error, not an absent object.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case hasCode(err, "NoSuchBucket"):
		return err
	case hasCode(err, "NoSuchKey", "NotFound") || httpStatus(err) == http.StatusNotFound:
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case IsRetryable(err):
		return store.Transient(err)
	}
	return err
}

// classifyingBody marks a failure while reading an object's body (a reset
// connection half-way through) as transient, as it would be on the request.
type classifyingBody struct{ io.ReadCloser }

func (b *classifyingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = classify(err)
	}
	return n, err
}

// isPreconditionFailed reports a conditional write refused because the key
// exists (412). R2 and S3 answer PutObject and CompleteMultipartUpload so.
func isPreconditionFailed(err error) bool {
	return hasCode(err, "PreconditionFailed") || httpStatus(err) == http.StatusPreconditionFailed
}

var (
	sdkRetryables = retry.IsErrorRetryables(retry.DefaultRetryables)
	sdkThrottles  = retry.IsErrorThrottles(retry.DefaultThrottles)
)

// IsRetryable reports whether a store error (from this package or the S3
// client) may succeed if the whole operation is tried again later: network
// failures, timeouts, 5xx, throttling (429, SlowDown) and concurrent
// conditional-write conflicts. Answers from the server about the request
// itself (403, 404, 412 and other 4xx), validation errors and cancellation
// are permanent. The SDK has already retried each request a few times, so
// this is for retrying at the level of a pipeline step.
func IsRetryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNotFound):
		return false
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	if hasCode(err, "ConditionalRequestConflict", "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable") {
		return true
	}
	if code := httpStatus(err); code != 0 {
		return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		// An S3 error without a status (unusual): trust its fault class.
		return ae.ErrorFault() == smithy.FaultServer
	}
	if sdkThrottles.IsErrorThrottle(err) == aws.TrueTernary || sdkRetryables.IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	// A certificate the client does not trust stays untrusted.
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// A body cut short, by the server or by the source being uploaded.
	return errors.Is(err, io.ErrUnexpectedEOF)
}
