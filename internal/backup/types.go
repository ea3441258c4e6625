package backup

import (
	"encoding/json"
	"time"
)

// Target names one database to back up. Either field may be empty: the
// start step resolves a name to its UUID and a UUID to its name.
type Target struct {
	DatabaseID   string `json:"database_id,omitempty"`
	DatabaseName string `json:"database_name,omitempty"`
}

// Export statuses, as D1 reports them.
const (
	StatusActive   = "active"
	StatusComplete = "complete"
	StatusError    = "error"
)

// Export is the state of one D1 export as it moves through the workflow: the
// output of the start and poll steps and the input of the poll and store
// steps. The signed dump URL is a bearer credential: in process it lives in
// SignedURL, which never serialises; between Lambda steps it travels only
// sealed (encrypted with a key derived from the credentials secret).
type Export struct {
	DatabaseID   string `json:"database_id"`
	DatabaseName string `json:"database_name"`
	Bookmark     string `json:"bookmark"`
	// Status is active, complete or error; the workflow's Choice state reads it.
	Status string `json:"status"`
	// Error is D1's message when Status is error.
	Error string `json:"error,omitempty"`
	// StartedAt is when the export was started; CompletedAt when it was first
	// seen complete. Their difference is how long the database was blocked.
	StartedAt   time.Time  `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	// Deadline bounds the polling loop; past it the poll step fails with
	// ExportTimeoutError.
	Deadline time.Time `json:"deadline"`
	// Polls counts poll calls; Restarts counts exports started again after
	// the previous one stopped running or its URL expired.
	Polls    int `json:"polls"`
	Restarts int `json:"restarts"`
	// PollIntervalSeconds is how long the workflow's Wait state sleeps
	// between polls.
	PollIntervalSeconds int `json:"poll_interval_seconds"`

	// RestartCause is why the previous export of this input stopped; the
	// workflow's Catch puts it here before starting a new export.
	RestartCause *StepError `json:"restart_cause,omitempty"`

	SignedURL string `json:"-"`
	SealedURL string `json:"sealed_url,omitempty"`

	// StoreCheckpoint is set when the store step stopped before the end of
	// the dump (its invocation's deadline): the workflow runs the store
	// step again with this Export, and the start step keeps it when a new
	// export replaces one whose URL expired, so the upload goes on if the
	// bookmark is unchanged.
	StoreCheckpoint *StoreCheckpoint `json:"store_checkpoint,omitempty"`
}

// Summary is the store step's output: where the backup landed and what it
// holds. The full record is the manifest stored beside the dump.
type Summary struct {
	DatabaseID   string `json:"database_id"`
	DatabaseName string `json:"database_name"`
	Bookmark     string `json:"bookmark"`
	Key          string `json:"key"`
	ManifestKey  string `json:"manifest_key"`
	SQLBytes     int64  `json:"sql_bytes"`
	SQLSHA256    string `json:"sql_sha256"`
	StoredBytes  int64  `json:"stored_bytes"`
	StoredSHA256 string `json:"stored_sha256"`
	Compression  string `json:"compression"`
	// Encrypted is true when the stored bytes are age-encrypted.
	Encrypted bool `json:"encrypted,omitempty"`
	// AlreadyExisted is true when this export had been stored before (a
	// rerun); nothing was written again.
	AlreadyExisted bool `json:"already_existed"`
	// Method is how the dump was read (export, query); Consistent is set
	// for a read through the query API: false when the database kept
	// changing while it was read. Warnings say what the backup could not
	// hold.
	Method     string   `json:"method,omitempty"`
	Consistent *bool    `json:"consistent,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
	// Invocations is how many store steps the upload took (0 when it
	// already existed).
	Invocations int `json:"store_invocations,omitempty"`
	// Notes say what the store step met on the way: a new URL, a fresh
	// start after the database changed, an unfinished backup completed.
	Notes []string `json:"store_notes,omitempty"`
}

// StoreResult is the store step's outcome: the Summary of a finished
// backup, or, when the step stopped before the end of the dump, the Export
// to run it again with (Next.StoreCheckpoint set). As JSON it is one or
// the other, so the workflow tests for "manifest_key".
type StoreResult struct {
	Summary *Summary
	Next    *Export
}

// MarshalJSON writes the Summary, or else the Export.
func (r StoreResult) MarshalJSON() ([]byte, error) {
	if r.Summary != nil {
		return json.Marshal(r.Summary)
	}
	return json.Marshal(r.Next)
}

// UnmarshalJSON reads either shape.
func (r *StoreResult) UnmarshalJSON(b []byte) error {
	var probe struct {
		ManifestKey *string `json:"manifest_key"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return err
	}
	if probe.ManifestKey != nil {
		r.Summary, r.Next = new(Summary), nil
		return json.Unmarshal(b, r.Summary)
	}
	r.Summary, r.Next = nil, new(Export)
	return json.Unmarshal(b, r.Next)
}

// StepError is an error as Step Functions records it in a Catch.
type StepError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}
