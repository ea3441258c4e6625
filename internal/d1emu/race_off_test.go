//go:build !race

package d1emu_test

const raceEnabled = false
