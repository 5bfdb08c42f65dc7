package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/server"
	"google.golang.org/grpc/codes"
)

// TestRateLimitPerKey: a key over its rate gets ResourceExhausted naming
// the key and the setting, other keys keep their own budget. The rate is
// so low that no token comes back during the test, whatever its speed.
func TestRateLimitPerKey(t *testing.T) {
	keys := testKeys(t)
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.Auth = keys
		cfg.RateLimitPerKey = 0.0001
		cfg.RateLimitBurst = 3
	}})
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[0].Cfg.GRPCAddr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctxA := withKey(ctx, keyClientA)
	for i := range 2 {
		if _, err := q.ListSessions(ctxA, &griddpb.ListSessionsRequest{}); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	// A stream open takes a token too: the third.
	stream, err := q.ClientStream(withKey(ctxA, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv() // no sessionid: refused by the handler, after the limiter
	wantCode(t, "stream within the burst", err, codes.InvalidArgument)
	_, err = q.ListSessions(ctxA, &griddpb.ListSessionsRequest{})
	wantCode(t, "fourth call", err, codes.ResourceExhausted)
	for _, s := range []string{`"client-a"`, "--rate-limit-per-key", "retry in"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if _, err := q.ListSessions(withKey(ctx, keyClientB), &griddpb.ListSessionsRequest{}); err != nil {
		t.Fatalf("another key: %v", err)
	}
}
