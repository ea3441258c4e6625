// Package r2 keeps backups in Cloudflare R2, or any S3-compatible server,
// through the S3 API.
//
// R2 is stricter than AWS in ways the SDK does not guard against, so this
// package does: every multipart part but the last has the same size, an
// upload never exceeds 10,000 parts, request checksums are only sent when an
// operation requires them (R2 has rejected the SDK's default aws-chunked CRC32
// trailers), and a failed upload is aborted so nothing lingers.
package r2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/d1backup/d1backup/internal/store"
)

const (
	// MiB is 1 << 20 bytes; part sizes are kept multiples of it.
	MiB = 1 << 20
	// DefaultPartSize is the multipart part size when Config.PartSize is 0.
	DefaultPartSize = 16 * MiB
	// MinPartSize and MaxPartSize are S3's (and R2's) limits for every part
	// but the last.
	MinPartSize = 5 * MiB
	MaxPartSize = 5 << 30
	// MaxParts is the most parts a multipart upload may have. With an
	// unknown body length an object is therefore capped at MaxParts × PartSize
	// (160 GiB with the default part size); pass PutOptions.Size to lift it.
	MaxParts = 10000
	// DefaultConcurrency is how many parts are in flight when
	// Config.Concurrency is 0. Low, because R2 throttles parallel part uploads
	// to one object and memory use is PartSize × (Concurrency + 2).
	DefaultConcurrency = 4
	// DefaultRegion is R2's signing region.
	DefaultRegion = "auto"

	// abortTimeout bounds the clean-up of a failed upload, which runs on a
	// fresh context so that it still happens when the caller's ctx has ended.
	abortTimeout = 30 * time.Second
)

// Config describes a bucket (and a prefix inside it) to keep backups in.
type Config struct {
	// Endpoint is https://<account>.r2.cloudflarestorage.com, or a test server.
	Endpoint string
	// Region is the signing region; "" means "auto", which R2 expects.
	Region string
	Bucket string
	// Prefix is prepended to every key. A missing trailing "/" is added and
	// leading ones are dropped, so "backups" and "/backups/" are the same.
	Prefix          string
	AccessKeyID     string
	SecretAccessKey string
	// PartSize is the multipart part size in bytes; 0 means DefaultPartSize.
	// Put grows it (in whole MiB) when a known body size needs more than
	// MaxParts parts.
	PartSize int64
	// Concurrency is how many parts are uploaded at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// HTTPClient carries every request; nil means the SDK's default. Tests
	// pass one that trusts their server's certificate.
	HTTPClient *http.Client
}

// Store is a store.Store in an S3 bucket.
type Store struct {
	client      *s3.Client
	uploader    *transfermanager.Client
	bucket      string
	prefix      string
	partSize    int64
	concurrency int
	maxParts    int64 // MaxParts; lowered by tests through export_test.go
}

var _ store.Store = (*Store)(nil)

// New checks cfg and builds a client from it alone: static credentials,
// path-style addressing, no shared config files and no environment, so
// behaviour is the same on a laptop, in a Lambda and in tests.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("r2: config: Endpoint is required")
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("r2: config: Endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("r2: config: Bucket is required")
	}
	if cfg.AccessKeyID == "" {
		return nil, errors.New("r2: config: AccessKeyID is required")
	}
	if cfg.SecretAccessKey == "" {
		return nil, errors.New("r2: config: SecretAccessKey is required")
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	switch {
	case cfg.PartSize == 0:
		cfg.PartSize = DefaultPartSize
	case cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize:
		return nil, fmt.Errorf("r2: config: PartSize %d must be between %d (5 MiB) and %d (5 GiB)", cfg.PartSize, MinPartSize, int64(MaxPartSize))
	}
	switch {
	case cfg.Concurrency == 0:
		cfg.Concurrency = DefaultConcurrency
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("r2: config: Concurrency %d must be positive", cfg.Concurrency)
	}
	prefix := strings.TrimLeft(cfg.Prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if prefix != "" {
		if err := store.CheckKey(strings.TrimSuffix(prefix, "/")); err != nil {
			return nil, fmt.Errorf("r2: config: Prefix: %w", err)
		}
	}

	opts := s3.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(strings.TrimRight(cfg.Endpoint, "/")),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		// The SDK's default (WhenSupported) sends CRC32 trailers with
		// aws-chunked encoding, which R2 has rejected; the default 0 would
		// mean "unset", not "off".
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	client := s3.New(opts)

	s := &Store{
		client:      client,
		bucket:      cfg.Bucket,
		prefix:      prefix,
		partSize:    cfg.PartSize,
		concurrency: cfg.Concurrency,
		maxParts:    MaxParts,
	}
	s.uploader = transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.MultipartUploadThreshold = cfg.PartSize
		o.Concurrency = cfg.Concurrency
		// The uploader applies its own setting to every call, overriding
		// the client's, and defaults to WhenSupported (CRC32 on each part).
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		// Without it the uploader aborts a failed upload with the caller's
		// ctx, which fails when that ctx was cancelled.
		o.FailTimeout = abortTimeout
	})
	return s, nil
}

// Client is the underlying S3 client, for tests and benchmarks.
func (s *Store) Client() *s3.Client { return s.client }

// String is r2://bucket or r2://bucket/prefix.
func (s *Store) String() string {
	if s.prefix == "" {
		return "r2://" + s.bucket
	}
	return "r2://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

// Put uploads r under key, creating it only if absent (If-None-Match: *).
// Bodies shorter than one part go in one PutObject; longer ones in a
// multipart upload whose parts all have the same size but the last. If
// opts.Size is known, the body must be exactly that long. Put first checks
// whether key exists, so a rerun fails fast instead of after uploading; the
// conditional write still decides races. The returned Modified is the local
// time the upload completed.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.Object, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Object{}, fmt.Errorf("r2: put object %q: %w", key, err)
	}
	partSize, err := s.partSizeFor(opts.Size)
	if err != nil {
		return store.Object{}, fmt.Errorf("r2: put object %q: %w", key, err)
	}
	if !opts.Replace {
		switch _, err := s.Stat(ctx, key); {
		case err == nil:
			return store.Object{}, fmt.Errorf("r2: put object %q: %w", key, store.ErrExists)
		case !errors.Is(err, store.ErrNotFound):
			return store.Object{}, fmt.Errorf("r2: put object %q: %w", key, err)
		}
	}

	// Wrapping the body also hides any io.Seeker from the uploader, so the
	// part size is the one computed here and never re-derived from the
	// seeker's length in bytes that are not a multiple of 1 MiB.
	b := &body{ctx: ctx, r: r, size: opts.Size, limit: s.maxParts * partSize, partSize: partSize, maxParts: s.maxParts}
	in := &transfermanager.UploadObjectInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(s.prefix + key),
		Body:        b,
		IfNoneMatch: aws.String("*"),
	}
	if opts.Replace {
		in.IfNoneMatch = nil
	}
	if opts.ContentType != "" {
		in.ContentType = aws.String(opts.ContentType)
	}
	if opts.Size >= 0 {
		in.ContentLength = aws.Int64(opts.Size)
	}
	_, err = s.uploader.UploadObject(ctx, in, func(o *transfermanager.Options) {
		o.PartSizeBytes = partSize
		// Equal to the part size so the uploader buffers at most one part
		// before deciding between PutObject and a multipart upload.
		o.MultipartUploadThreshold = partSize
		o.MaxUploadParts = s.maxParts
	})
	if err != nil {
		err = s.abortFailed(ctx, in.Key, err)
		if isPreconditionFailed(err) {
			return store.Object{}, fmt.Errorf("r2: put object %q: %w", key, store.ErrExists)
		}
		return store.Object{}, fmt.Errorf("r2: put object %q: %w", key, classify(err))
	}
	return store.Object{Key: key, Size: b.n, Modified: time.Now().UTC()}, nil
}

// partSizeFor returns the part size for a body of size bytes (-1: unknown):
// the configured one, grown in whole MiB until the body fits in maxParts
// parts. The uploader grows it too, but by odd byte counts.
func (s *Store) partSizeFor(size int64) (int64, error) {
	ps := s.partSize
	if size > 0 {
		// floor(size/ps) < maxParts, the uploader's own condition, holds
		// for any ps above size/maxParts.
		if least := size/s.maxParts + 1; ps < least {
			ps = (least + MiB - 1) / MiB * MiB
		}
	}
	if ps > MaxPartSize {
		return 0, fmt.Errorf("%d bytes need parts over 5 GiB", size)
	}
	return ps, nil
}

// abortFailed aborts the multipart upload behind err, if any. The uploader
// has already tried; this covers the cases where its attempt failed, and
// aborting twice is harmless (NoSuchUpload).
func (s *Store) abortFailed(ctx context.Context, key *string, err error) error {
	var mu transfermanager.MultipartUploadError
	if !errors.As(err, &mu) || mu.UploadID() == "" {
		return err
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(s.bucket),
		Key:      key,
		UploadId: aws.String(mu.UploadID()),
	})
	if aerr != nil && !hasCode(aerr, "NoSuchUpload") && httpStatus(aerr) != http.StatusNotFound {
		return fmt.Errorf("%w (abort multipart upload %s: %v)", err, mu.UploadID(), aerr)
	}
	return err
}

// body guards the caller's reader: it stops at ctx's end, enforces a known
// size, and caps an unknown one at maxParts parts with an error that says
// why, instead of the uploader's after-the-fact part count error.
type body struct {
	ctx      context.Context
	r        io.Reader
	size     int64 // -1 when unknown
	limit    int64
	partSize int64
	maxParts int64
	n        int64
	err      error
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		b.err = err
		return 0, err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	switch {
	case b.size >= 0 && b.n > b.size:
		err = fmt.Errorf("body is longer than the %d bytes given as its size", b.size)
	case b.n > b.limit:
		err = fmt.Errorf("body is longer than %d parts of %d bytes; give its size or a larger part size", b.maxParts, b.partSize)
	case err == io.EOF && b.size >= 0 && b.n < b.size:
		err = fmt.Errorf("body ended after %d of the %d bytes given as its size: %w", b.n, b.size, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Get opens the object under key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, fmt.Errorf("r2: get object %q: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return nil, fmt.Errorf("r2: get object %q: %w", key, classify(err))
	}
	return &classifyingBody{ReadCloser: out.Body}, nil
}

// Stat describes the object under key.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Object{}, fmt.Errorf("r2: head object %q: %w", key, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return store.Object{}, fmt.Errorf("r2: head object %q: %w", key, classify(err))
	}
	return store.Object{Key: key, Size: aws.ToInt64(out.ContentLength), Modified: aws.ToTime(out.LastModified), ETag: aws.ToString(out.ETag)}, nil
}

// List returns the objects under prefix (relative to the store's prefix),
// sorted by key. Directory markers (keys ending in "/") are skipped: they
// are not valid keys.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("r2: list objects %q: %w", prefix, classify(err))
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if key == "" || strings.HasSuffix(key, "/") {
				continue
			}
			objs = append(objs, store.Object{Key: key, Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

// Delete removes key; an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return fmt.Errorf("r2: delete object %q: %w", key, err)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err = classify(err); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("r2: delete object %q: %w", key, err)
	}
	return nil
}
