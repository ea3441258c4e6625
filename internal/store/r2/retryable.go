package r2

// IsRetryable reports whether an error from this store may pass on a retry;
// the backup pipeline asks stores this through a method so it need not know
// each backend.
func (s *Store) IsRetryable(err error) bool { return IsRetryable(err) }
