//go:build race

package main

// buildFlags build the binary under test as this test binary was built: its packages are then
// compiled once for both (SQLite's alone takes about a minute cold), and the binary runs under
// the race detector too.
var buildFlags = []string{"-race"}
