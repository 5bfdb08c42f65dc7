package server_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/gridd/gridd/auth"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// Keys of the auth tests; hashed at the lowest bcrypt cost so that the
// test is quick even when each verdict is computed.
const (
	keyAdmin   = "admin-key-0123456789"
	keyClientA = "client-a-key-0123456789"
	keyClientB = "client-b-key-0123456789"
	keyWorker  = "worker-key-0123456789"
	keyNode    = "node-key-0123456789"
)

func testKeys(t *testing.T) *auth.Authenticator {
	t.Helper()
	hash := func(k string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(k), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	a, err := auth.New([]auth.Key{
		{Name: "admin", Hash: hash(keyAdmin), Role: auth.RoleAdmin},
		{Name: "client-a", Hash: hash(keyClientA), Role: auth.RoleClient, Apps: []string{"A"}},
		{Name: "client-b", Hash: hash(keyClientB), Role: auth.RoleClient, Apps: []string{"B"}},
		{Name: "worker", Hash: hash(keyWorker), Role: auth.RoleWorker, Apps: []string{"*"}},
		{Name: "node", Hash: hash(keyNode), Role: auth.RoleNode},
	}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func withKey(ctx context.Context, key string) context.Context {
	if key == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, auth.MDAPIKey, key)
}

// TestAuth starts three nodes that require keys (the followers join with
// a node key) and calls every RPC family through a follower, so that the
// forwarded calls are checked as well: without a key, with a wrong key,
// with the wrong role, and with a key of another app. Then a client and a
// worker with their keys run tasks end to end.
func TestAuth(t *testing.T) {
	keys := testKeys(t)
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.Auth = keys
		cfg.JoinAPIKey = keyNode
	}})
	c.WaitMembers(3)
	leader := c.WaitLeader()
	follower := dialRaw(t, c.Nodes[(leader+1)%3].Cfg.GRPCAddr)
	q := griddpb.NewQueueClient(follower)
	cl := griddpb.NewClusterClient(follower)
	cache := griddpb.NewCacheClient(follower)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Status stays open, for probes.
	if _, err := cl.Status(ctx, &griddpb.ClusterStatusRequest{}); err != nil {
		t.Fatalf("status without a key: %v", err)
	}

	a := withKey(ctx, keyClientA)
	sa, err := q.CreateSession(a, &griddpb.CreateSessionRequest{App: "A"})
	if err != nil {
		t.Fatalf("create A: %v", err)
	}
	sb, err := q.CreateSession(withKey(ctx, keyClientB), &griddpb.CreateSessionRequest{App: "B"})
	if err != nil {
		t.Fatalf("create B: %v", err)
	}
	sid := sa.Id

	// Every family, under each kind of refusal.
	calls := []struct {
		name     string
		wrongApp codes.Code // the answer to client B's key on A's session
		call     func(ctx context.Context) error
	}{
		{"CreateSession", codes.PermissionDenied, func(ctx context.Context) error {
			_, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{App: "A"})
			return err
		}},
		{"GetSession", codes.NotFound, func(ctx context.Context) error {
			_, err := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: sid})
			return err
		}},
		{"UpdateSession", codes.NotFound, func(ctx context.Context) error {
			_, err := q.UpdateSession(ctx, &griddpb.UpdateSessionRequest{SessionId: sid, Update: &griddpb.SessionUpdate{}})
			return err
		}},
		{"CloseSession", codes.NotFound, func(ctx context.Context) error {
			_, err := q.CloseSession(ctx, &griddpb.CloseSessionRequest{SessionId: sid})
			return err
		}},
		{"ClientStream", codes.NotFound, func(ctx context.Context) error {
			return streamErr(q.ClientStream(metadata.AppendToOutgoingContext(ctx, "sessionid", sid)))
		}},
		{"ClientStreamDeadLetters", codes.NotFound, func(ctx context.Context) error {
			return streamErr(q.ClientStreamDeadLetters(metadata.AppendToOutgoingContext(ctx, "sessionid", sid)))
		}},
		{"ListDeadLetters", codes.NotFound, func(ctx context.Context) error {
			_, err := q.ListDeadLetters(ctx, &griddpb.ListDeadLettersRequest{SessionId: sid})
			return err
		}},
		{"RetryDeadLetters", codes.NotFound, func(ctx context.Context) error {
			_, err := q.RetryDeadLetters(ctx, &griddpb.RetryDeadLettersRequest{SessionId: sid})
			return err
		}},
		{"PurgeDeadLetters", codes.NotFound, func(ctx context.Context) error {
			_, err := q.PurgeDeadLetters(ctx, &griddpb.PurgeDeadLettersRequest{SessionId: sid})
			return err
		}},
		{"CancelTasks", codes.NotFound, func(ctx context.Context) error {
			_, err := q.CancelTasks(ctx, &griddpb.CancelTasksRequest{SessionId: sid, All: true})
			return err
		}},
		{"GetTasks", codes.NotFound, func(ctx context.Context) error {
			_, err := q.GetTasks(ctx, &griddpb.GetTasksRequest{SessionId: sid, Ids: []string{"t"}})
			return err
		}},
		{"SetSharedData", codes.NotFound, func(ctx context.Context) error {
			up, err := cache.SetSharedData(ctx)
			if err != nil {
				return err
			}
			if err := up.Send(&griddpb.SharedDataChunk{Header: &griddpb.SharedDataHeader{SessionId: sid, Size: 1},
				Data: []byte("x")}); err != nil && err != io.EOF {
				return err
			}
			_, err = up.CloseAndRecv()
			return err
		}},
		{"GetSharedData", codes.NotFound, func(ctx context.Context) error {
			return streamErr(cache.GetSharedData(ctx, &griddpb.GetSharedDataRequest{SessionId: sid}))
		}},
		{"DeleteSharedData", codes.NotFound, func(ctx context.Context) error {
			_, err := cache.DeleteSharedData(ctx, &griddpb.DeleteSharedDataRequest{SessionId: sid})
			return err
		}},
	}
	for _, tc := range calls {
		wantCode(t, tc.name+" without a key", tc.call(ctx), codes.Unauthenticated)
		wantCode(t, tc.name+" with a wrong key", tc.call(withKey(ctx, "not-a-key-of-this-cluster")), codes.PermissionDenied)
		wantCode(t, tc.name+" of app A with app B's key", tc.call(withKey(ctx, keyClientB)), tc.wrongApp)
		if tc.name != "GetSharedData" {
			wantCode(t, tc.name+" with a worker key", tc.call(withKey(ctx, keyWorker)), codes.PermissionDenied)
		}
	}

	// Roles: workers' streams and Cluster writes are not for clients;
	// a node key only joins.
	w := metadata.AppendToOutgoingContext(withKey(ctx, keyClientA), "workerid", "w1")
	wantCode(t, "WorkerUpdate with a client key", streamErr(q.WorkerUpdate(w)), codes.PermissionDenied)
	wantCode(t, "WorkerStream with a client key", streamErr(q.WorkerStream(w)), codes.PermissionDenied)
	for _, key := range []string{keyClientA, keyWorker, keyNode} {
		_, err := cl.Remove(withKey(ctx, key), &griddpb.RemoveRequest{Id: "n9"})
		wantCode(t, "Remove without admin", err, codes.PermissionDenied)
		_, err = cl.TransferLeadership(withKey(ctx, key), &griddpb.TransferLeadershipRequest{})
		wantCode(t, "TransferLeadership without admin", err, codes.PermissionDenied)
		_, err = q.ListSessions(withKey(ctx, keyNode), &griddpb.ListSessionsRequest{})
		wantCode(t, "ListSessions with a node key", err, codes.PermissionDenied)
	}
	_, err = cl.Join(withKey(ctx, keyClientA), &griddpb.JoinRequest{Id: "n9", RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2"})
	wantCode(t, "Join with a client key", err, codes.PermissionDenied)

	// Lists show only the caller's apps; admin sees all.
	for key, want := range map[string][]string{keyClientA: {sa.Id}, keyClientB: {sb.Id}, keyAdmin: {sa.Id, sb.Id}} {
		ls, err := q.ListSessions(withKey(ctx, key), &griddpb.ListSessionsRequest{IncludeClosed: true})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		got := map[string]bool{}
		for _, s := range ls.Sessions {
			got[s.Id] = true
		}
		if len(got) != len(want) {
			t.Fatalf("key %q lists %v; want %v", key, got, want)
		}
		for _, id := range want {
			if !got[id] {
				t.Fatalf("key %q lists %v; want %v", key, got, want)
			}
		}
	}
	if _, err := q.GetSession(withKey(ctx, keyAdmin), &griddpb.GetSessionRequest{SessionId: sid}); err != nil {
		t.Fatalf("admin reads app A's session: %v", err)
	}

	// End to end with keys: the SDK client of app A and a worker.
	startKeyedWorker(t, c.Addrs())
	cli, err := client.Dial(ctx, c.Addrs(), client.WithAPIKey(keyClientA))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sess, err := cli.CreateSession(ctx, &griddpb.SessionAttributes{}, client.WithApp("A"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t1", Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-sess.Results():
		if r.TaskID != "t1" || string(r.Payload) != "ok" {
			t.Fatalf("result %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no result with keys")
	}
	// The worker now serves app A: client B does not see it, client A does.
	ws, err := q.ListWorkers(withKey(ctx, keyClientB), &griddpb.ListWorkersRequest{})
	if err != nil || len(ws.Workers) != 0 {
		t.Fatalf("client B sees workers %v (%v)", ws, err)
	}
	ws, err = q.ListWorkers(withKey(ctx, keyAdmin), &griddpb.ListWorkersRequest{})
	if err != nil || len(ws.Workers) != 1 {
		t.Fatalf("admin sees workers %v (%v); want 1", ws, err)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func startKeyedWorker(t *testing.T, addrs []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = worker.Run(ctx, worker.Options{Addrs: addrs, WorkerID: "wk", Concurrency: 2, APIKey: keyWorker},
			func(context.Context, worker.Task) ([]byte, error) { return []byte("ok"), nil })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// streamErr returns the status a stream ends with: the server checks the
// key when the stream opens, and the error reaches the client on its
// first receive.
func streamErr[T any](s interface{ Recv() (T, error) }, err error) error {
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

var _ grpc.ClientConnInterface = (*grpc.ClientConn)(nil)
