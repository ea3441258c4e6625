package r2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/d1backup/d1backup/internal/store"
)

var _ store.Multipart = (*Store)(nil)

// CreateUpload starts a multipart upload for key.
func (s *Store) CreateUpload(ctx context.Context, key string, opts store.UploadOptions) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", fmt.Errorf("r2: create multipart upload %q: %w", key, err)
	}
	if opts.PartSize < MinPartSize || opts.PartSize > MaxPartSize {
		return "", fmt.Errorf("r2: create multipart upload %q: part size %d must be between %d (5 MiB) and %d (5 GiB)", key, opts.PartSize, MinPartSize, int64(MaxPartSize))
	}
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)}
	if opts.ContentType != "" {
		in.ContentType = aws.String(opts.ContentType)
	}
	out, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", fmt.Errorf("r2: create multipart upload %q: %w", key, classify(err))
	}
	if aws.ToString(out.UploadId) == "" {
		return "", fmt.Errorf("r2: create multipart upload %q: the server returned no upload ID", key)
	}
	return aws.ToString(out.UploadId), nil
}

// UploadPart uploads part n. Checksums follow the client's WhenRequired
// setting (none for UploadPart); the body travels over TLS with an
// unsigned payload, as the SDK does for S3 over HTTPS.
func (s *Store) UploadPart(ctx context.Context, key, id string, n int, body []byte) (store.Part, error) {
	if err := checkUpload(key, id); err != nil {
		return store.Part{}, fmt.Errorf("r2: upload part %d of %q: %w", n, key, err)
	}
	if n < 1 || n > int(s.maxParts) {
		return store.Part{}, fmt.Errorf("r2: upload part %d of %q: part numbers are 1..%d", n, key, s.maxParts)
	}
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.prefix + key),
		UploadId:      aws.String(id),
		PartNumber:    aws.Int32(int32(n)),
		ContentLength: aws.Int64(int64(len(body))),
		Body:          bytes.NewReader(body),
	})
	if err != nil {
		return store.Part{}, fmt.Errorf("r2: upload part %d of %q: %w", n, key, uploadError(err))
	}
	etag := aws.ToString(out.ETag)
	if etag == "" {
		return store.Part{}, fmt.Errorf("r2: upload part %d of %q: the server returned no ETag", n, key)
	}
	return store.Part{Number: n, ETag: etag, Size: int64(len(body))}, nil
}

// CompleteUpload completes the upload with If-None-Match: *, after holding
// the part list to R2's rules (S3 servers other than R2 accept unequal
// parts; R2 rejects them only at completion, after the whole upload).
func (s *Store) CompleteUpload(ctx context.Context, key, id string, parts []store.Part) (store.Object, error) {
	if err := checkUpload(key, id); err != nil {
		return store.Object{}, fmt.Errorf("r2: complete multipart upload %q: %w", key, err)
	}
	if len(parts) > int(s.maxParts) {
		return store.Object{}, fmt.Errorf("r2: complete multipart upload %q: %d parts, more than %d", key, len(parts), s.maxParts)
	}
	partSize := int64(0)
	if len(parts) > 0 {
		partSize = parts[0].Size
	}
	if len(parts) > 1 && partSize < MinPartSize {
		return store.Object{}, fmt.Errorf("r2: complete multipart upload %q: parts of %d bytes; all but the last must have at least %d (5 MiB)", key, partSize, MinPartSize)
	}
	if err := store.CheckParts(parts, max(partSize, 1)); err != nil {
		return store.Object{}, fmt.Errorf("r2: complete multipart upload %q: %w", key, err)
	}
	if err := s.checkUploaded(ctx, key, id, parts); err != nil {
		return store.Object{}, fmt.Errorf("r2: complete multipart upload %q: %w", key, err)
	}
	var size int64
	completed := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(int32(p.Number)), ETag: aws.String(p.ETag)}
		size += p.Size
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(s.prefix + key),
		UploadId:        aws.String(id),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
		IfNoneMatch:     aws.String("*"),
	})
	if err != nil {
		if isPreconditionFailed(err) {
			return store.Object{}, fmt.Errorf("r2: complete multipart upload %q: %w", key, store.ErrExists)
		}
		return store.Object{}, fmt.Errorf("r2: complete multipart upload %q: %w", key, uploadError(err))
	}
	return store.Object{Key: key, Size: size, Modified: time.Now().UTC()}, nil
}

// AbortUpload aborts the upload; one that is gone already is not an error.
func (s *Store) AbortUpload(ctx context.Context, key, id string) error {
	if err := checkUpload(key, id); err != nil {
		return fmt.Errorf("r2: abort multipart upload %q: %w", key, err)
	}
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key), UploadId: aws.String(id),
	})
	if err != nil && !isNoSuchUpload(err) {
		return fmt.Errorf("r2: abort multipart upload %q: %w", key, classify(err))
	}
	return nil
}

// ListUploads lists the uploads in progress under prefix.
func (s *Store) ListUploads(ctx context.Context, prefix string) ([]store.Upload, error) {
	var ups []store.Upload
	p := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("r2: list multipart uploads %q: %w", prefix, classify(err))
		}
		for _, u := range page.Uploads {
			key, ok := strings.CutPrefix(aws.ToString(u.Key), s.prefix)
			if !ok || store.CheckKey(key) != nil || aws.ToString(u.UploadId) == "" {
				continue // not a key of ours: never touched
			}
			ups = append(ups, store.Upload{Key: key, ID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)})
		}
	}
	sort.SliceStable(ups, func(i, j int) bool {
		if ups[i].Key != ups[j].Key {
			return ups[i].Key < ups[j].Key
		}
		return ups[i].Initiated.Before(ups[j].Initiated)
	})
	return ups, nil
}

// checkUploaded compares the parts to complete with what the server holds
// (ListParts): sizes and ETags. S3 checks ETags itself, but not the sizes
// the caller believes, and R2 alone refuses unequal parts.
func (s *Store) checkUploaded(ctx context.Context, key, id string, parts []store.Part) error {
	held := make(map[int32]types.Part, len(parts))
	p := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key), UploadId: aws.String(id),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list parts: %w", uploadError(err))
		}
		for _, part := range page.Parts {
			held[aws.ToInt32(part.PartNumber)] = part
		}
	}
	for _, want := range parts {
		got, ok := held[int32(want.Number)]
		switch {
		case !ok:
			return fmt.Errorf("part %d was never uploaded", want.Number)
		case aws.ToString(got.ETag) != want.ETag || aws.ToInt64(got.Size) != want.Size:
			return fmt.Errorf("part %d is %d bytes with ETag %s on the server, not %d bytes with ETag %s", want.Number, aws.ToInt64(got.Size), aws.ToString(got.ETag), want.Size, want.ETag)
		}
	}
	return nil
}

func checkUpload(key, id string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if id == "" {
		return errors.New("empty upload ID")
	}
	return nil
}

// isNoSuchUpload reports S3's answer for an upload that is gone.
func isNoSuchUpload(err error) bool {
	return hasCode(err, "NoSuchUpload") || httpStatus(err) == http.StatusNotFound
}

// uploadError classifies a part upload or completion failure: a missing
// upload is ErrUploadNotFound, not an absent object.
func uploadError(err error) error {
	if isNoSuchUpload(err) {
		return fmt.Errorf("%w: %w", store.ErrUploadNotFound, err)
	}
	return classify(err)
}
