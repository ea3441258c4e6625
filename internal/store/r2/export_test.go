package r2

// SetMaxParts lowers the multipart part limit so tests can reach it with
// small bodies.
func SetMaxParts(s *Store, n int64) { s.maxParts = n }
