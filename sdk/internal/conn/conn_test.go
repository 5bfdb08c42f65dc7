package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestBackoffStaysWithinBoundsAndGrows(t *testing.T) {
	cases := []struct{ min, max time.Duration }{
		{50 * time.Millisecond, 2 * time.Second},
		{time.Millisecond, time.Millisecond},
		{10 * time.Millisecond, 15 * time.Millisecond},
		{time.Nanosecond, time.Hour},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v..%v", c.min, c.max), func(t *testing.T) {
			b := NewBackoff(c.min, c.max)
			var last time.Duration
			for i := range 200 {
				d := b.Next()
				if d < c.min || d > c.max {
					t.Fatalf("attempt %d: wait %v outside [%v, %v]", i, d, c.min, c.max)
				}
				last = d
			}
			// After many attempts the ceiling is Max, so waits are in its upper half.
			if last < c.max/2 {
				t.Fatalf("after 200 attempts the wait is %v, want at least %v", last, c.max/2)
			}
			b.Reset()
			if d, hi := b.Next(), min(2*c.min, c.max); d < c.min || d > hi {
				t.Fatalf("after Reset the wait is %v, want within [%v, %v]", d, c.min, hi)
			}
		})
	}
}

// During an election the wait stays short and the sequence does not grow.
func TestBackoffAfterNoLeader(t *testing.T) {
	b := NewBackoff(10*time.Millisecond, time.Second)
	noLeader := fmt.Errorf("%w: %w", ErrNoLeader, status.Error(codes.Unavailable, "x"))
	for range 100 {
		if d := b.After(noLeader); d < 10*time.Millisecond || d > 20*time.Millisecond {
			t.Fatalf("wait during an election %v, want within [10ms, 20ms]", d)
		}
	}
	if d := b.After(status.Error(codes.Unavailable, "down")); d > 20*time.Millisecond {
		t.Fatalf("first growing wait %v: the election waits advanced the sequence", d)
	}
}

func TestBackoffDefaults(t *testing.T) {
	b := NewBackoff(0, 0)
	if b.Min != DefaultMinBackoff || b.Max != DefaultMaxBackoff {
		t.Fatalf("defaults: got %v..%v", b.Min, b.Max)
	}
	b = NewBackoff(time.Second, time.Millisecond)
	if b.Max != time.Second {
		t.Fatalf("max below min: got max %v, want it raised to min", b.Max)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context: %v", err)
	}
	if err := Wait(context.Background(), time.Microsecond); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestRetryable(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"unavailable", live, status.Error(codes.Unavailable, "x"), true},
		{"aborted", live, status.Error(codes.Aborted, "x"), true},
		{"attempt timeout", live, status.Error(codes.DeadlineExceeded, "x"), true},
		{"wrapped unavailable", live, fmt.Errorf("op: %w", status.Error(codes.Unavailable, "x")), true},
		{"caller gave up", done, status.Error(codes.Unavailable, "x"), false},
		{"caller deadline", done, status.Error(codes.DeadlineExceeded, "x"), false},
		{"invalid", live, status.Error(codes.InvalidArgument, "x"), false},
		{"not found", live, status.Error(codes.NotFound, "x"), false},
		{"precondition", live, status.Error(codes.FailedPrecondition, "x"), false},
		{"exists", live, status.Error(codes.AlreadyExists, "x"), false},
		{"denied", live, status.Error(codes.PermissionDenied, "x"), false},
		{"unauthenticated", live, status.Error(codes.Unauthenticated, "x"), false},
		{"exhausted", live, status.Error(codes.ResourceExhausted, "x"), false},
		{"plain error", live, errors.New("x"), false},
		{"nil", live, nil, false},
	}
	for _, c := range cases {
		if got := Retryable(c.ctx, c.err); got != c.want {
			t.Errorf("%s: Retryable = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPermanent(t *testing.T) {
	for _, c := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition,
		codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted,
		codes.Unimplemented} {
		if !Permanent(status.Error(c, "x")) {
			t.Errorf("%v: want permanent", c)
		}
	}
	for _, err := range []error{nil, io.EOF, status.Error(codes.Unavailable, "x"),
		status.Error(codes.Canceled, "x"), status.Error(codes.Internal, "x"),
		status.Error(codes.DeadlineExceeded, "x")} {
		if Permanent(err) {
			t.Errorf("%v: want a stream that breaks this way to be reopened", err)
		}
	}
}

func TestCtxErrorKeepsBothCauses(t *testing.T) {
	last := status.Error(codes.Unavailable, "no leader")
	err := fmt.Errorf("wrapped: %w", &CtxError{Op: "submit", Ctx: context.DeadlineExceeded, Last: last})
	if got := status.Code(err); got != codes.DeadlineExceeded {
		t.Fatalf("status.Code = %v, want DeadlineExceeded", got)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("errors.Is(err, context.DeadlineExceeded) = false")
	}
	if !errors.Is(err, last) {
		t.Fatal("the last attempt's error is not reachable with errors.Is")
	}
	err = &CtxError{Op: "get", Ctx: context.Canceled}
	if got := status.Code(err); got != codes.Canceled {
		t.Fatalf("status.Code = %v, want Canceled", got)
	}
}

func TestNewNeedsAnAddress(t *testing.T) {
	if _, err := New(Config{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("New without addresses: %v", err)
	}
}

// With nothing listening, discovery fails with Unavailable (so callers
// retry) and Call gives up when the caller's context ends, reporting that.
func TestCallWithNoClusterEndsWithTheContext(t *testing.T) {
	p, err := New(Config{Addrs: []string{"127.0.0.1:1"}, ProbeTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if _, err := p.Discover(context.Background()); status.Code(err) != codes.Unavailable {
		t.Fatalf("Discover: %v, want Unavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = p.Call(ctx, "test", CallOptions{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		func(context.Context, *grpc.ClientConn) error { return nil })
	if status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call: %v, want DeadlineExceeded", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Leader(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leader after Close: %v", err)
	}
}
