package conn

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Default bounds of the reconnection backoff. The floor is short because a
// leader election on loopback completes in a few hundred milliseconds; the
// ceiling keeps a client from hammering a cluster that is down.
const (
	DefaultMinBackoff = 50 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
)

// Backoff yields exponentially growing, jittered waits within [Min, Max].
// Jitter spreads the reconnections of many clients after a leader dies, so
// the new leader is not hit by all of them in the same millisecond.
// A Backoff is not safe for concurrent use; each retry loop owns one.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// NewBackoff returns a Backoff with the given bounds; zero or inconsistent
// bounds fall back to the defaults.
func NewBackoff(minWait, maxWait time.Duration) *Backoff {
	if minWait <= 0 {
		minWait = DefaultMinBackoff
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxBackoff
	}
	if maxWait < minWait {
		maxWait = minWait
	}
	return &Backoff{Min: minWait, Max: maxWait}
}

// Next returns the wait before the next attempt: the ceiling doubles with
// every call (2*Min, 4*Min, ... up to Max) and the wait is drawn uniformly
// from the upper half of [Min, ceiling] ("equal jitter"), so it never drops
// below Min and even the first waits of many clients are spread.
func (b *Backoff) Next() time.Duration {
	b.n++
	ceiling := b.Max
	if b.n < 62 && b.Min<<b.n > 0 && b.Min<<b.n < b.Max {
		ceiling = b.Min << b.n
	}
	low := max(ceiling/2, b.Min)
	if ceiling <= low {
		return low
	}
	return low + rand.N(ceiling-low+1)
}

// Reset starts the sequence over, after an attempt succeeded.
func (b *Backoff) Reset() { b.n = 0 }

// Wait blocks for d or until ctx ends, returning ctx.Err() in that case.
func Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// After returns the wait before retrying after err: short and not growing
// while an election is under way (ErrNoLeader), Next otherwise.
func (b *Backoff) After(err error) time.Duration {
	if errors.Is(err, ErrNoLeader) {
		hi := min(2*b.Min, b.Max)
		return b.Min + rand.N(hi-b.Min+1)
	}
	return b.Next()
}
