//go:build !plant_no_dedup

package client

// plantNoDedup is a planted bug for the failure-injection suite's
// self-test: built with -tags plant_no_dedup, the SDK stops removing
// repeated results, and the jepsen checker must then report duplicates and
// FAIL. A suite that cannot fail proves nothing. Never set in a release.
const plantNoDedup = false
