package step_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/gzip"

	"github.com/d1backup/d1backup/internal/backup"
	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/d1emu"
	"github.com/d1backup/d1backup/internal/d1emu/d1emutest"
	"github.com/d1backup/d1backup/internal/step"
	"github.com/d1backup/d1backup/internal/testenv"
)

// TestStoreDumpLoops holds StoreDump to its contract with the state
// machine: while the dump is not stored it returns the Export it was given
// with "store_checkpoint" (no "manifest_key", the URL still sealed), the
// workflow passes that JSON back in, and once stored it returns the
// Summary with "manifest_key". An expired URL goes through StartExport,
// which keeps the checkpoint for the next StoreDump.
func TestStoreDumpLoops(t *testing.T) {
	emu := d1emutest.Start(t, d1emu.Options{})
	db, err := emu.AddSyntheticDatabase("big", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := emu.WriteDump(context.Background(), db.UUID, h); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	s3 := testenv.RequireS3(t)
	// Invocations of 5.3 s that stop 5 s before their deadline: each does
	// the least a store step always does (a second), far from the dump.
	hs, _ := handlers(t, emu, s3, step.Options{Cloudflare: true, Store: true, Seal: true},
		config.EnvPartSize+"=5MiB", config.EnvStoreMargin+"=5s")
	ctx := context.Background()
	started, err := hs.StartExport(ctx, invocation(step.ExportState{Export: backup.Export{DatabaseID: db.UUID}}, nil))
	if err != nil || started.Status != backup.StatusComplete {
		t.Fatalf("StartExport: %+v, %v", started, err)
	}
	exp := started.Export
	var out map[string]any
	for n := 1; ; n++ {
		if n > 50 {
			t.Fatal("StoreDump never finished")
		}
		if n == 2 {
			// The URL expired: the workflow's Catch goes to StartExport.
			emu.InjectFault(d1emu.Fault{Endpoint: d1emu.EndpointDownload, Kind: d1emu.FaultExpired})
			if _, err := hs.StoreDump(ctx, exp); step.ErrorType(err) != "DownloadExpiredError" {
				t.Fatalf("StoreDump with an expired URL: %v", err)
			}
			exp.RestartCause = &backup.StepError{Error: "DownloadExpiredError", Cause: "expired"}
			restarted, err := hs.StartExport(ctx, invocation(step.ExportState{Export: exp}, nil))
			if err != nil || restarted.StoreCheckpoint == nil || restarted.Restarts != exp.Restarts {
				t.Fatalf("StartExport after the URL expired: %+v, %v; want the checkpoint kept, no restart counted", restarted, err)
			}
			exp = roundTrip[backup.Export](t, restarted.Export)
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second+300*time.Millisecond)
		res, err := hs.StoreDump(ictx, exp)
		cancel()
		if err != nil {
			t.Fatalf("StoreDump #%d: %v", n, err)
		}
		raw, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "X-Amz-Signature") || strings.Contains(string(raw), "__emu/dumps") {
			t.Fatalf("StoreDump output shows the signed URL: %s", raw)
		}
		out = nil
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		if _, done := out["manifest_key"]; done {
			t.Logf("stored in %d invocations", n)
			if n < 2 {
				t.Errorf("stored in %d invocation; the test wants several", n)
			}
			break
		}
		cp, ok := out["store_checkpoint"].(map[string]any)
		if !ok || cp["key"] == "" || out["sealed_url"] == "" || out["status"] != "complete" {
			t.Fatalf("StoreDump #%d output %s: want the Export with store_checkpoint and its sealed URL", n, raw)
		}
		exp = roundTrip[backup.Export](t, json.RawMessage(raw))
	}
	if out["sql_sha256"] != want {
		t.Errorf("summary SQL SHA-256 %v, want %s", out["sql_sha256"], want)
	}
	obj, err := s3.Client().GetObject(ctx, &s3api.GetObjectInput{Bucket: aws.String(os.Getenv("R2_BUCKET")), Key: aws.String(out["key"].(string))})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	zr, err := gzip.NewReader(obj.Body) // reads every member, one per invocation
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	if _, err := io.Copy(got, zr); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got.Sum(nil)) != want {
		t.Error("the stored dump does not decompress to the emulator's dump")
	}
}

// roundTrip passes v through JSON, as Step Functions state does.
func roundTrip[T any](t *testing.T, v any) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
