package server

import (
	"testing"
	"time"
)

// The bucket on a fake clock: burst at once, then rate per second.
func TestKeyLimiterBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newKeyLimiter(2, 3)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("call %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("after the burst: %v, wait %s; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another key shares the bucket")
	}
	now = now.Add(500 * time.Millisecond) // one token back at 2/s
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("refused after a token came back")
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("a second call allowed with one token back")
	}
	now = now.Add(time.Hour) // refills to the burst, no more
	for i := range 3 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("call %d after an idle hour refused", i+1)
		}
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("the bucket grew beyond its burst while idle")
	}
	if d := newKeyLimiter(0.5, 0); d.burst != 1 {
		t.Fatalf("default burst of 0.5/s = %g, want 1", d.burst)
	}
}
