//go:build plant_no_dedup

package client

// plantNoDedup: see plant_off.go. This build delivers repeated results to
// the application: a planted bug for testing the checkers.
const plantNoDedup = true
