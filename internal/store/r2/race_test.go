//go:build race

package r2_test

// raceEnabled: the race detector multiplies allocations, so memory bounds
// are not checked under it.
const raceEnabled = true
