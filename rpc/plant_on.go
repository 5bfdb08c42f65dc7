//go:build plant_ack_before_commit

package rpc

// plantAckBeforeCommit: see plant_off.go. This build acknowledges batches
// before they are durable: a planted bug for testing the checkers.
const plantAckBeforeCommit = true
