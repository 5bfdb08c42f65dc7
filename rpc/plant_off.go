//go:build !plant_ack_before_commit

package rpc

// plantAckBeforeCommit is a planted bug for the failure-injection suite's
// self-test: built with -tags plant_ack_before_commit, the leader
// acknowledges a batch before its Raft commit, so a leader killed at the
// wrong moment loses acknowledged tasks, and the jepsen checker must report
// them lost and FAIL. Never set in a release.
const plantAckBeforeCommit = false
