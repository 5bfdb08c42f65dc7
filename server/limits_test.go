package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

func limitBatch(seq uint64, prefix string, from, n int) *griddpb.Batch {
	b := &griddpb.Batch{Seq: seq}
	for i := range n {
		id := fmt.Sprintf("%s-%04d", prefix, from+i)
		b.Messages = append(b.Messages, &griddpb.Message{Id: id, Payload: []byte(id)})
	}
	return b
}

// TestPendingLimitRefusesAndChangesNothing fills a session up to
// --max-pending-per-session with no worker running and checks that a batch
// over it is refused whole, with a message that says what to do, and that
// the session did not move; a resend of tasks it has is never refused.
func TestPendingLimitRefusesAndChangesNothing(t *testing.T) {
	const limit = 50
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.MaxPendingPerSession = limit
	}})
	c.WaitMembers(3)
	// Through a follower: the check runs on the leader it forwards to.
	follower := (c.WaitLeader() + 1) % 3
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[follower].Cfg.GRPCAddr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sess, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{SessionId: "capped"})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := q.ClientStream(metadata.AppendToOutgoingContext(ctx, "sessionid", sess.Id))
	if err != nil {
		t.Fatal(err)
	}
	submit := func(b *griddpb.Batch) *griddpb.SubmitAck {
		t.Helper()
		if err := stream.Send(&griddpb.ClientMessage{Kind: &griddpb.ClientMessage_Submit{Submit: b}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		ack := m.GetSubmitAck()
		if ack.GetSeq() != b.Seq {
			t.Fatalf("ack of batch %d, want %d", ack.GetSeq(), b.Seq)
		}
		return ack
	}
	if ack := submit(limitBatch(1, "t", 0, 40)); ack.Code != 0 || ack.Accepted != 40 {
		t.Fatalf("first 40: %+v", ack)
	}
	// 40 + 11 > 50: refused whole, although 10 of them would fit.
	ack := submit(limitBatch(2, "t", 40, 11))
	if codes.Code(ack.Code) != codes.ResourceExhausted || ack.Accepted != 0 {
		t.Fatalf("over the cap: %+v, want ResourceExhausted", ack)
	}
	for _, s := range []string{"session capped has 40 pending tasks", "the limit is 50", "--max-pending-per-session"} {
		if !strings.Contains(ack.Message, s) {
			t.Errorf("message %q does not say %q", ack.Message, s)
		}
	}
	// The same 40 again plus 10 new ones: only the new ones count.
	if ack := submit(limitBatch(3, "t", 0, 50)); ack.Code != 0 || ack.Accepted != 10 || ack.Duplicates != 40 {
		t.Fatalf("resend plus 10: %+v", ack)
	}
	// Full: a resend of known tasks is still answered, a new task is not.
	if ack := submit(limitBatch(4, "t", 0, 50)); ack.Code != 0 || ack.Duplicates != 50 {
		t.Fatalf("resend when full: %+v", ack)
	}
	if ack := submit(limitBatch(5, "t", 50, 1)); codes.Code(ack.Code) != codes.ResourceExhausted {
		t.Fatalf("one more when full: %+v", ack)
	}
	// A batch larger than the cap could never fit: not worth waiting for.
	if ack := submit(limitBatch(6, "big", 0, limit+1)); codes.Code(ack.Code) != codes.FailedPrecondition ||
		!strings.Contains(ack.Message, "smaller batches") {
		t.Fatalf("batch over the cap: %+v, want FailedPrecondition", ack)
	}
	info, err := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: sess.Id})
	if err != nil {
		t.Fatal(err)
	}
	if n := info.GetCounts().GetSubmitted(); n != limit {
		t.Fatalf("submitted = %d after refusals, want %d", n, limit)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// TestSessionsPerAppLimit checks --max-sessions-per-app: per app, counting
// open sessions only, and a retried create is not refused.
func TestSessionsPerAppLimit(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.MaxSessionsPerApp = 2
	}})
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[0].Cfg.GRPCAddr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	create := func(req string, app string) error {
		_, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: req, SessionId: req, App: app})
		return err
	}
	for _, id := range []string{"a1", "a2"} {
		if err := create(id, "a"); err != nil {
			t.Fatal(err)
		}
	}
	err := create("a3", "a")
	wantCode(t, "third session of app a", err, codes.ResourceExhausted)
	for _, s := range []string{`app "a" has 2 open sessions`, "the limit is 2", "--max-sessions-per-app"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if _, err := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: "a3"}); err == nil {
		t.Fatal("the refused session exists")
	}
	// A retry of a create that succeeded gets its first answer.
	if err := create("a2", "a"); err != nil {
		t.Fatalf("retry of a2: %v", err)
	}
	// Other apps have their own count.
	if err := create("b1", "b"); err != nil {
		t.Fatal(err)
	}
	// A closed session frees its place.
	if _, err := q.CloseSession(ctx, &griddpb.CloseSessionRequest{SessionId: "a1"}); err != nil {
		t.Fatal(err)
	}
	if err := create("a3", "a"); err != nil {
		t.Fatalf("after closing a1: %v", err)
	}
}
