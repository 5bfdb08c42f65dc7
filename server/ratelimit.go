package server

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/gridd/gridd/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// keyLimiter is a token bucket per API key name: each call (a unary call
// or the opening of a stream; messages on an open stream have their own
// backpressure) takes a token, and tokens come back at rate per second up
// to burst. The map is bounded by the keys file, since only verified key
// names reach it.
type keyLimiter struct {
	rate, burst float64
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newKeyLimiter(rate float64, burst int) *keyLimiter {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(rate)))
	}
	return &keyLimiter{rate: rate, burst: float64(burst), now: time.Now, buckets: make(map[string]*bucket)}
}

// allow takes a token of key, or reports how long until one is back.
func (l *keyLimiter) allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// check refuses the call when the caller's key is over its rate. Calls
// without a key (a cluster without keys) and node keys (joining) are not
// limited.
func (l *keyLimiter) check(ctx context.Context, method string) error {
	id := auth.FromContext(ctx)
	if id == nil || id.Role == auth.RoleNode {
		return nil
	}
	if ok, wait := l.allow(id.Name); !ok {
		return status.Errorf(codes.ResourceExhausted,
			"API key %q is over its rate limit of %g calls/s (burst %g) on %s: retry in %s, or raise --rate-limit-per-key",
			id.Name, l.rate, l.burst, method, wait.Round(time.Millisecond))
	}
	return nil
}

// newRateLimiter is the node's limiter, or nil when calls are not limited:
// without keys there is no key to count against.
func newRateLimiter(cfg Config) *keyLimiter {
	if cfg.Auth == nil || cfg.RateLimitPerKey <= 0 {
		return nil
	}
	return newKeyLimiter(cfg.RateLimitPerKey, cfg.RateLimitBurst)
}

// rateLimitOptions run after authentication, which names the key.
func rateLimitOptions(l *keyLimiter) []grpc.ServerOption {
	if l == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := l.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := l.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
