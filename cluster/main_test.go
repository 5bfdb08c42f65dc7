package cluster_test

import (
	"testing"

	"github.com/gridd/gridd/internal/leakcheck"
)

// TestMain fails the run if goroutines outlive the tests: every node is
// closed by its test, so raft, the transport and the watchers must be gone.
func TestMain(m *testing.M) { leakcheck.Main(m) }
