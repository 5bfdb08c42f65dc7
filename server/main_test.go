package server_test

import (
	"testing"

	"github.com/gridd/gridd/internal/leakcheck"
)

// TestMain fails the run if goroutines outlive the tests: nodes, workers,
// clients and their streams must all be gone once each test ends.
func TestMain(m *testing.M) { leakcheck.Main(m) }
