package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func dialRaw(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
	if st := status.Convert(err); code != codes.OK && st.Message() == "" {
		t.Fatalf("%s: the error has no message a person could act on", what)
	}
}

// TestBadInputChangesNothing sends every kind of bad request through real
// gRPC and checks the status code, and that the replicated state did not
// move.
func TestBadInputChangesNothing(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.MaxPayloadBytes = 1024
		cfg.MaxBatchTasks = 10
	}})
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[0].Cfg.GRPCAddr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: "nope"})
	wantCode(t, "get unknown session", err, codes.NotFound)
	_, err = q.GetSession(ctx, &griddpb.GetSessionRequest{})
	wantCode(t, "get empty id", err, codes.InvalidArgument)
	_, err = q.CreateSession(ctx, &griddpb.CreateSessionRequest{Attributes: &griddpb.SessionAttributes{MinWorkers: 5, MaxWorkers: 2}})
	wantCode(t, "max < min workers", err, codes.InvalidArgument)
	_, err = q.CreateSession(ctx, &griddpb.CreateSessionRequest{Attributes: &griddpb.SessionAttributes{Priority: 11}})
	wantCode(t, "priority 11", err, codes.InvalidArgument)
	_, err = q.CreateSession(ctx, &griddpb.CreateSessionRequest{Attributes: &griddpb.SessionAttributes{Priority: -1}})
	wantCode(t, "priority -1", err, codes.InvalidArgument)
	_, err = q.CreateSession(ctx, &griddpb.CreateSessionRequest{SessionId: strings.Repeat("x", 257)})
	wantCode(t, "over-long session id", err, codes.InvalidArgument)
	_, err = q.UpdateSession(ctx, &griddpb.UpdateSessionRequest{SessionId: "nope", Update: &griddpb.SessionUpdate{Priority: proto.Int32(3)}})
	wantCode(t, "update unknown session", err, codes.NotFound)

	sess, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: "r1", SessionId: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: "r2", SessionId: "s1"})
	wantCode(t, "create a taken id", err, codes.AlreadyExists)
	again, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: "r1", SessionId: "s1"})
	if err != nil || again.Id != sess.Id {
		t.Fatalf("repeat of request r1: %v %v, want the first answer", again, err)
	}
	_, err = q.UpdateSession(ctx, &griddpb.UpdateSessionRequest{SessionId: "s1", Update: &griddpb.SessionUpdate{MinWorkers: proto.Int32(4), MaxWorkers: proto.Int32(1)}})
	wantCode(t, "update to max < min", err, codes.InvalidArgument)

	f := c.Nodes[0].Srv.Node().FSM()
	hash := f.Hash()

	// Streams without or with a wrong session.
	stream, err := q.ClientStream(ctx)
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "client stream without sessionid", err, codes.InvalidArgument)
	stream, err = q.ClientStream(metadata.AppendToOutgoingContext(ctx, "sessionid", "nope"))
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "client stream of an unknown session", err, codes.NotFound)

	// Bad batches are rejected one by one; the stream stays usable.
	stream, err = q.ClientStream(metadata.AppendToOutgoingContext(ctx, "sessionid", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := func(ids ...string) []*griddpb.Message {
		out := make([]*griddpb.Message, len(ids))
		for i, id := range ids {
			out[i] = &griddpb.Message{Id: id, Payload: []byte("p")}
		}
		return out
	}
	bad := []struct {
		name  string
		batch *griddpb.Batch
	}{
		{"empty batch", &griddpb.Batch{}},
		{"empty task id", &griddpb.Batch{Messages: msgs("a", "")}},
		{"over-long task id", &griddpb.Batch{Messages: msgs(strings.Repeat("i", 257))}},
		{"payload over the limit", &griddpb.Batch{Messages: []*griddpb.Message{{Id: "big", Payload: make([]byte, 1025)}}}},
		{"too many tasks", &griddpb.Batch{Messages: msgs("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")}},
		{"another session", &griddpb.Batch{SessionId: "s2", Messages: msgs("x")}},
	}
	for i, b := range bad {
		b.batch.Seq = uint64(i + 1)
		if err := stream.Send(&griddpb.ClientMessage{Kind: &griddpb.ClientMessage_Submit{Submit: b.batch}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		ack := m.GetSubmitAck()
		if ack == nil || ack.Seq != b.batch.Seq || codes.Code(ack.Code) != codes.InvalidArgument || ack.Message == "" {
			t.Fatalf("%s: ack %v, want InvalidArgument with a message", b.name, ack)
		}
		t.Logf("%s: %s", b.name, ack.Message)
	}
	if f.Hash() != hash {
		t.Fatal("rejected input changed the replicated state")
	}

	// A good batch on the same stream is accepted; its repeat is a duplicate.
	for _, want := range []uint32{2, 0} {
		if err := stream.Send(&griddpb.ClientMessage{Kind: &griddpb.ClientMessage_Submit{Submit: &griddpb.Batch{Seq: 99, Messages: msgs("a", "b")}}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ack := m.GetSubmitAck(); ack.GetCode() != 0 || ack.Accepted != want || ack.Accepted+ack.Duplicates != 2 {
			t.Fatalf("good batch: ack %v, want %d accepted", ack, want)
		}
	}

	// A closed session takes no more tasks.
	if _, err := q.CloseSession(ctx, &griddpb.CloseSessionRequest{SessionId: "s1"}); err != nil {
		t.Fatal(err)
	}
	stream, err = q.ClientStream(metadata.AppendToOutgoingContext(ctx, "sessionid", "s1"))
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "client stream of a closed session", err, codes.FailedPrecondition)
	got, err := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: "s1"})
	if err != nil || got.State != griddpb.SessionState_SESSION_STATE_CLOSED || got.Counts.Submitted != 2 {
		t.Fatalf("closed session: %v %v", got, err)
	}
}

// TestFollowerForwards: a client that only knows a follower can do
// everything, because followers forward calls and streams to the leader.
func TestFollowerForwards(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader()
	follower := (leader + 1) % 3
	conn := dialRaw(t, c.Nodes[follower].Cfg.GRPCAddr)
	q := griddpb.NewQueueClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The follower learns the leader's address once it applied the member
	// table entry; it may lag the leader by a heartbeat.
	var st *griddpb.ClusterStatus
	c.WaitFor("the follower to know the leader's address", 10*time.Second, func() bool {
		var err error
		st, err = griddpb.NewClusterClient(conn).Status(ctx, &griddpb.ClusterStatusRequest{})
		return err == nil && st.LeaderGrpcAddr != ""
	})
	if st.LeaderGrpcAddr != c.Nodes[leader].Cfg.GRPCAddr || st.NodeId != c.Nodes[follower].Cfg.ID {
		t.Fatalf("status from follower: leader %q, node %q", st.LeaderGrpcAddr, st.NodeId)
	}
	var hdr metadata.MD
	sess, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: "f1"}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get(rpc.MDLeader); len(got) != 1 || got[0] != c.Nodes[leader].Cfg.GRPCAddr {
		t.Fatalf("forwarded answer's %s header = %v, want the leader's address", rpc.MDLeader, got)
	}
	stream, err := q.ClientStream(metadata.AppendToOutgoingContext(ctx, "sessionid", sess.Id))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&griddpb.ClientMessage{Kind: &griddpb.ClientMessage_Submit{Submit: &griddpb.Batch{
		Seq: 1, Messages: []*griddpb.Message{{Id: "t1", Payload: []byte("x")}}}}}); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ack := m.GetSubmitAck(); ack.GetAccepted() != 1 {
		t.Fatalf("ack through follower: %v", m)
	}
	got, err := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: sess.Id})
	if err != nil || got.Counts.Pending != 1 {
		t.Fatalf("get through follower: %v %v", got, err)
	}
}
