package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/server"
)

// cacheConn dials one node's gRPC port directly (no client-side failover),
// so that a test chooses which node serves a call.
func cacheConn(t testing.TB, addr string) (griddpb.CacheClient, griddpb.QueueClient) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(rpc.MaxMsgSize), grpc.MaxCallSendMsgSize(rpc.MaxMsgSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return griddpb.NewCacheClient(cc), griddpb.NewQueueClient(cc)
}

func newSession(t testing.TB, ctx context.Context, q griddpb.QueueClient) string {
	t.Helper()
	s, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{App: "cache-test"})
	if err != nil {
		t.Fatal(err)
	}
	return s.Id
}

// putShared uploads data in chunks of chunk bytes with Set (set) or Update.
func putShared(ctx context.Context, c griddpb.CacheClient, set bool, h *griddpb.SharedDataHeader, data []byte,
	chunk int) (*griddpb.SharedDataInfo, error) {
	var (
		up  grpc.ClientStreamingClient[griddpb.SharedDataChunk, griddpb.SharedDataInfo]
		err error
	)
	if set {
		up, err = c.SetSharedData(ctx)
	} else {
		up, err = c.UpdateSharedData(ctx)
	}
	if err != nil {
		return nil, err
	}
	first := true
	for first || len(data) > 0 {
		n := min(len(data), chunk)
		m := &griddpb.SharedDataChunk{Data: data[:n]}
		if first {
			m.Header = h
			first = false
		}
		data = data[n:]
		if err := up.Send(m); err != nil {
			break // the server ended the stream: its status comes below
		}
	}
	return up.CloseAndRecv()
}

// getShared downloads a level and checks the header against the data.
func getShared(ctx context.Context, c griddpb.CacheClient, session string, level int64) (*griddpb.SharedDataHeader, []byte, error) {
	down, err := c.GetSharedData(ctx, &griddpb.GetSharedDataRequest{SessionId: session, UpdateLevel: level})
	if err != nil {
		return nil, nil, err
	}
	var (
		h    *griddpb.SharedDataHeader
		data []byte
	)
	for {
		m, err := down.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if m.Header != nil {
			h = m.Header
			data = make([]byte, 0, h.Size)
		}
		data = append(data, m.Data...)
	}
	if h == nil {
		return nil, nil, errors.New("download without a header")
	}
	if sum := sha256.Sum256(data); int64(len(data)) != h.Size || !bytes.Equal(sum[:], h.Sha256) {
		return nil, nil, errors.New("downloaded data does not match its header")
	}
	return h, data, nil
}

func randBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Set, Update, Get (latest and exact level, on a follower and the leader),
// keep-K and Delete on a 3-node cluster.
func TestCacheSetUpdateGet(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := c.WaitLeader()
	follower := (leader + 1) % 3
	lc, lq := cacheConn(t, c.Nodes[leader].Srv.GRPCAddr())
	fc, _ := cacheConn(t, c.Nodes[follower].Srv.GRPCAddr())
	sid := newSession(t, ctx, lq)

	_, _, err := getShared(ctx, fc, sid, 0)
	wantCode(t, "get before any set", err, codes.NotFound)
	_, err = putShared(ctx, fc, false, &griddpb.SharedDataHeader{SessionId: sid, Size: 3}, []byte("abc"), 1)
	wantCode(t, "update before any set", err, codes.NotFound)

	v1 := []byte("level one")
	info, err := putShared(ctx, fc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: int64(len(v1)), RequestId: "set-1"}, v1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if info.UpdateLevel != 1 || info.Size != int64(len(v1)) {
		t.Fatalf("set answered %v", info)
	}
	_, err = putShared(ctx, lc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: 1}, []byte("x"), 1)
	wantCode(t, "second set", err, codes.AlreadyExists)

	// A retry of the first set with its request id gets the first answer.
	again, err := putShared(ctx, lc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: int64(len(v1)), RequestId: "set-1"}, v1, 4)
	if err != nil || again.UpdateLevel != 1 {
		t.Fatalf("retried set: %v, %v", again, err)
	}

	for lvl := int64(2); lvl <= 3; lvl++ {
		v := bytes.Repeat([]byte{byte(lvl)}, 10)
		info, err := putShared(ctx, lc, false, &griddpb.SharedDataHeader{SessionId: sid, Size: 10}, v, 3)
		if err != nil || info.UpdateLevel != lvl {
			t.Fatalf("update to %d: %v, %v", lvl, info, err)
		}
	}
	_, err = putShared(ctx, lc, false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1, UpdateLevel: 3}, []byte("x"), 1)
	wantCode(t, "update to the current level", err, codes.InvalidArgument)

	h, data, err := getShared(ctx, fc, sid, 0)
	if err != nil || h.UpdateLevel != 3 || !bytes.Equal(data, bytes.Repeat([]byte{3}, 10)) {
		t.Fatalf("get latest on a follower: %v %q %v", h, data, err)
	}
	c.WaitConverged()
	if _, _, err := getShared(ctx, fc, sid, 2); err != nil {
		t.Fatalf("get level 2 (kept): %v", err)
	}
	_, _, err = getShared(ctx, fc, sid, 1)
	wantCode(t, "get level 1 (dropped: keep 2)", err, codes.NotFound)
	_, _, err = getShared(ctx, fc, sid, 4)
	wantCode(t, "get level 4 (not written)", err, codes.FailedPrecondition)

	del, err := fc.DeleteSharedData(ctx, &griddpb.DeleteSharedDataRequest{SessionId: sid, RequestId: "del-1"})
	if err != nil || !del.Deleted {
		t.Fatalf("delete: %v, %v", del, err)
	}
	_, _, err = getShared(ctx, lc, sid, 0)
	wantCode(t, "get after delete", err, codes.NotFound)
	// Levels never go backwards, even after a delete.
	info, err = putShared(ctx, lc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: 0}, nil, 1)
	if err != nil || info.UpdateLevel != 4 {
		t.Fatalf("set after delete: %v, %v", info, err)
	}

	if _, err := lq.CloseSession(ctx, &griddpb.CloseSessionRequest{SessionId: sid}); err != nil {
		t.Fatal(err)
	}
	_, _, err = getShared(ctx, lc, sid, 0)
	wantCode(t, "get after close", err, codes.NotFound)
}

// A 64 MiB level goes up through a follower (forwarded to the leader, as
// 1 MiB Raft entries) and comes back intact from every node.
func TestCacheLargePayloadRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB through a 3-node cluster")
	}
	// Raft's production timings: with the test's short ones, a loaded
	// 2-core machine writing 64 MiB can miss heartbeats and depose the
	// leader mid-upload (which a client handles by retrying, tested below).
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	leader := c.WaitLeader()
	fc, fq := cacheConn(t, c.Nodes[(leader+1)%3].Srv.GRPCAddr())
	sid := newSession(t, ctx, fq)
	data := randBytes(64<<20, 64)
	sum := sha256.Sum256(data)
	start := time.Now()
	info, err := putShared(ctx, fc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: int64(len(data)), Sha256: sum[:]},
		data, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("64 MiB set through a follower in %v", time.Since(start))
	if !bytes.Equal(info.Sha256, sum[:]) || info.Size != int64(len(data)) {
		t.Fatalf("set answered %v bytes, sha %x", info.Size, info.Sha256)
	}
	c.WaitConverged()
	for i := range c.Nodes {
		cc, _ := cacheConn(t, c.Nodes[i].Srv.GRPCAddr())
		start := time.Now()
		h, got, err := getShared(ctx, cc, sid, 1)
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		if !bytes.Equal(h.Sha256, sum[:]) || !bytes.Equal(got, data) {
			t.Fatalf("node %d returned different data", i+1)
		}
		t.Logf("node %d served 64 MiB in %v", i+1, time.Since(start))
	}
}

// The leader is killed while an update streams through it. The client
// retries with the same request_id on the other nodes: exactly one level
// lands, and a reader polling the latest level never sees it go back.
func TestCacheLeaderKillDuringUpdate(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := c.WaitLeader()
	lc, lq := cacheConn(t, c.Nodes[leader].Srv.GRPCAddr())
	sid := newSession(t, ctx, lq)
	if _, err := putShared(ctx, lc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: 3}, []byte("one"), 3); err != nil {
		t.Fatal(err)
	}

	// Readers on the two nodes that survive, asking for the latest level.
	var clients []griddpb.CacheClient
	for i := range c.Nodes {
		if i != leader {
			cc, _ := cacheConn(t, c.Nodes[i].Srv.GRPCAddr())
			clients = append(clients, cc)
		}
	}
	stopRead := make(chan struct{})
	readErr := make(chan error, len(clients))
	for _, cc := range clients {
		go func() {
			var seen int64
			for {
				select {
				case <-stopRead:
					readErr <- nil
					return
				default:
				}
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				h, _, err := getShared(rctx, cc, sid, 0)
				rcancel()
				if err != nil {
					continue // the election in progress
				}
				if h.UpdateLevel < seen {
					readErr <- errors.New("a reader saw the latest level go backwards")
					return
				}
				seen = h.UpdateLevel
			}
		}()
	}

	data := randBytes(8<<20, 8)
	sum := sha256.Sum256(data)
	hdr := &griddpb.SharedDataHeader{SessionId: sid, Size: int64(len(data)), Sha256: sum[:], RequestId: "update-2"}
	up, err := lc.UpdateSharedData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 256 << 10
	for off := 0; off < len(data)/2; off += chunk {
		m := &griddpb.SharedDataChunk{Data: data[off : off+chunk]}
		if off == 0 {
			m.Header = hdr
		}
		if err := up.Send(m); err != nil {
			break
		}
	}
	c.Kill(leader)
	if _, err := up.CloseAndRecv(); err == nil {
		t.Fatal("a half-sent upload succeeded")
	}

	// Retry, as a client does, on Unavailable (no leader yet, or the new
	// one deposed in turn on a loaded machine), with the same request_id.
	retry := func() *griddpb.SharedDataInfo {
		for attempt := 0; ; attempt++ {
			info, err := putShared(ctx, clients[attempt%len(clients)], false, hdr, data, chunk)
			if err == nil {
				return info
			}
			if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
				t.Fatalf("retry %d: %v", attempt, err)
			}
			t.Logf("retry %d: %v", attempt, err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	if info := retry(); info.UpdateLevel != 2 {
		t.Fatalf("the retried update landed level %d, want 2", info.UpdateLevel)
	}
	// A further retry (the answer was lost, say) is answered, not applied.
	if again := retry(); again.UpdateLevel != 2 {
		t.Fatalf("retry after success answered level %d", again.UpdateLevel)
	}
	close(stopRead)
	for range clients {
		if err := <-readErr; err != nil {
			t.Fatal(err)
		}
	}
	h, got, err := getShared(ctx, clients[1], sid, 0)
	for status.Code(err) == codes.Unavailable && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		h, got, err = getShared(ctx, clients[1], sid, 0)
	}
	if err != nil || h.UpdateLevel != 2 || !bytes.Equal(got, data) {
		t.Fatalf("latest after failover: %v, %v", h, err)
	}
	_, _, err = getShared(ctx, clients[1], sid, 3)
	wantCode(t, "level 3", err, codes.FailedPrecondition)
}

// Bad uploads and requests get a precise error and change nothing.
func TestCacheBadInputChangesNothing(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.MaxSharedDataBytes = 3 << 20
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc, q := cacheConn(t, c.Nodes[0].Srv.GRPCAddr())
	sid := newSession(t, ctx, q)
	closed := newSession(t, ctx, q)
	if _, err := q.CloseSession(ctx, &griddpb.CloseSessionRequest{SessionId: closed}); err != nil {
		t.Fatal(err)
	}
	if _, err := putShared(ctx, cc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: 3, UpdateLevel: 5}, []byte("abc"), 3); err != nil {
		t.Fatal(err)
	}
	f := c.Nodes[0].Srv.Node().FSM()
	before := f.Hash()
	two := randBytes(2<<20, 2)
	wrong := sha256.Sum256([]byte("not it"))
	for _, tc := range []struct {
		name string
		set  bool
		h    *griddpb.SharedDataHeader
		data []byte
		code codes.Code
	}{
		{"no header", true, nil, []byte("abc"), codes.InvalidArgument},
		{"no session id", true, &griddpb.SharedDataHeader{Size: 1}, []byte("a"), codes.InvalidArgument},
		{"unknown session", true, &griddpb.SharedDataHeader{SessionId: "nope", Size: 1}, []byte("a"), codes.NotFound},
		{"closed session", true, &griddpb.SharedDataHeader{SessionId: closed, Size: 1}, []byte("a"), codes.FailedPrecondition},
		{"over the limit", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 4 << 20}, nil, codes.InvalidArgument},
		{"negative size", false, &griddpb.SharedDataHeader{SessionId: sid, Size: -1}, nil, codes.InvalidArgument},
		{"negative ttl", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1, TtlMs: -1}, []byte("a"), codes.InvalidArgument},
		{"short sha256", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1, Sha256: []byte{1}}, []byte("a"), codes.InvalidArgument},
		{"expiry from the client", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1, ExpiresUnixMs: 1}, []byte("a"), codes.InvalidArgument},
		{"level backwards", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1, UpdateLevel: 4}, []byte("a"), codes.InvalidArgument},
		{"level equal", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1, UpdateLevel: 5}, []byte("a"), codes.InvalidArgument},
		{"set on data", true, &griddpb.SharedDataHeader{SessionId: sid, Size: 1}, []byte("a"), codes.AlreadyExists},
		{"more than declared", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1 << 20}, two, codes.InvalidArgument},
		{"less than declared", false, &griddpb.SharedDataHeader{SessionId: sid, Size: 3 << 20}, two, codes.InvalidArgument},
		{"sha256 mismatch", false, &griddpb.SharedDataHeader{SessionId: sid, Size: int64(len(two)), Sha256: wrong[:]}, two, codes.InvalidArgument},
	} {
		_, err := putShared(ctx, cc, tc.set, tc.h, tc.data, 1<<20)
		wantCode(t, tc.name, err, tc.code)
		if f.Hash() != before {
			t.Fatalf("%s: the state changed", tc.name)
		}
	}

	// A chunk over 1 MiB.
	up, err := cc.UpdateSharedData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = up.Send(&griddpb.SharedDataChunk{Header: &griddpb.SharedDataHeader{SessionId: sid, Size: int64(len(two))}, Data: two})
	_, err = up.CloseAndRecv()
	wantCode(t, "chunk over 1 MiB", err, codes.InvalidArgument)
	// A header in the middle of a stream.
	up, err = cc.UpdateSharedData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &griddpb.SharedDataHeader{SessionId: sid, Size: 2}
	_ = up.Send(&griddpb.SharedDataChunk{Header: h, Data: []byte("a")})
	_ = up.Send(&griddpb.SharedDataChunk{Header: h, Data: []byte("b")})
	_, err = up.CloseAndRecv()
	wantCode(t, "second header", err, codes.InvalidArgument)
	// An empty stream.
	up, err = cc.UpdateSharedData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = up.CloseAndRecv()
	wantCode(t, "empty stream", err, codes.InvalidArgument)

	_, _, err = getShared(ctx, cc, sid, -1)
	wantCode(t, "negative level", err, codes.InvalidArgument)
	_, _, err = getShared(ctx, cc, "", 0)
	wantCode(t, "get without session", err, codes.InvalidArgument)
	_, _, err = getShared(ctx, cc, "nope", 0)
	wantCode(t, "get of an unknown session", err, codes.NotFound)
	_, err = cc.DeleteSharedData(ctx, &griddpb.DeleteSharedDataRequest{})
	wantCode(t, "delete without session", err, codes.InvalidArgument)
	_, err = cc.DeleteSharedData(ctx, &griddpb.DeleteSharedDataRequest{SessionId: "nope"})
	wantCode(t, "delete of an unknown session", err, codes.NotFound)
	if f.Hash() != before {
		t.Fatal("the state changed")
	}
}

// --cache-addr serves the Cache service on a listener of its own, and the
// leader's sweeper expires data whose TTL passed (and only then).
func TestCacheSeparateListenerAndExpiry(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.CacheAddr = "127.0.0.1:0"
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := c.Nodes[0].Srv
	if srv.CacheAddr() == "" || srv.CacheAddr() == srv.GRPCAddr() {
		t.Fatalf("cache listener %q (gRPC %q)", srv.CacheAddr(), srv.GRPCAddr())
	}
	_, q := cacheConn(t, srv.GRPCAddr())
	cc, otherQ := cacheConn(t, srv.CacheAddr())
	if _, err := otherQ.ListSessions(ctx, &griddpb.ListSessionsRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("the cache listener serves the Queue service: %v", err)
	}
	sid := newSession(t, ctx, q)
	long := newSession(t, ctx, q)
	if _, err := putShared(ctx, cc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: 2, TtlMs: 300}, []byte("hi"), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := putShared(ctx, cc, true, &griddpb.SharedDataHeader{SessionId: long, Size: 2}, []byte("hi"), 2); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("the short TTL to expire", 30*time.Second, func() bool {
		_, _, err := getShared(ctx, cc, sid, 0)
		return status.Code(err) == codes.NotFound
	})
	if _, _, err := getShared(ctx, cc, long, 0); err != nil {
		t.Fatalf("data with the default TTL expired too: %v", err)
	}
}
