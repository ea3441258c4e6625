//go:build !race

package r2_test

const raceEnabled = false
