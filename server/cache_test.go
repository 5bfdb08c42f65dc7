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

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc"
	"github.com/gridd/gridd/rpc/griddpb"
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
