package leakcheck

import (
	"strings"
	"testing"
)

func parkedForTest(stop chan struct{}) { <-stop }

// The check must see a goroutine a test left behind, and stop seeing it
// once it ends.
func TestForeignSeesALeftoverGoroutine(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		parkedForTest(stop)
		close(done)
	}()
	if got := wait(50e6); !strings.Contains(got, "parkedForTest") {
		t.Fatalf("a parked goroutine was not reported; got:\n%s", got)
	}
	close(stop)
	<-done
	if got := wait(1e9); strings.Contains(got, "parkedForTest") {
		t.Fatalf("an ended goroutine is still reported:\n%s", got)
	}
}
