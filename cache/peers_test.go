package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/internal/testcluster"
	pb "github.com/gridd/gridd/rpc/griddpb"
)

// realCentral is a real 3-node gridd cluster whose Cache service is the
// upstream of the node caches.
type realCentral struct {
	c     *testcluster.Cluster
	nodes []*grpc.ClientConn
}

func startCentral(t testing.TB, opts testcluster.Options) *realCentral {
	t.Helper()
	r := &realCentral{c: testcluster.Start(t, 3, opts)}
	for _, a := range r.c.Addrs() {
		cc, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20), grpc.MaxCallSendMsgSize(4<<20)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		r.nodes = append(r.nodes, cc)
	}
	return r
}

func (r *realCentral) session(t testing.TB) string {
	t.Helper()
	s, err := pb.NewQueueClient(r.nodes[r.c.WaitLeader()]).CreateSession(context.Background(), &pb.CreateSessionRequest{App: "nodecache-test"})
	if err != nil {
		t.Fatal(err)
	}
	return s.Id
}

var writeSeq atomic.Int64

// write stores data as the session's next level (Set for the first) and
// returns the level. A write cut by a leader change is retried on the next
// node with the same request id, so it lands once.
func (r *realCentral) write(t testing.TB, session string, first bool, data []byte) int64 {
	t.Helper()
	reqID := fmt.Sprintf("nodecache-test-%d", writeSeq.Add(1))
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		info, err := r.writeOnce(r.nodes[i%len(r.nodes)], session, first, reqID, data)
		if err == nil {
			return info.UpdateLevel
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("write shared data: %v", err)
		}
		t.Logf("write shared data: %v; retrying", err)
	}
}

func (r *realCentral) writeOnce(cc *grpc.ClientConn, session string, first bool, reqID string, data []byte) (*pb.SharedDataInfo, error) {
	ctx := context.Background()
	var up grpc.ClientStreamingClient[pb.SharedDataChunk, pb.SharedDataInfo]
	var err error
	if first {
		up, err = pb.NewCacheClient(cc).SetSharedData(ctx)
	} else {
		up, err = pb.NewCacheClient(cc).UpdateSharedData(ctx)
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	msg := &pb.SharedDataChunk{Header: &pb.SharedDataHeader{SessionId: session, Size: int64(len(data)), Sha256: sum[:], RequestId: reqID}}
	for rest := data; ; {
		n := min(len(rest), chunkSize)
		msg.Data, rest = rest[:n], rest[n:]
		if err := up.Send(msg); err != nil {
			break // the status comes with CloseAndRecv
		}
		if len(rest) == 0 {
			break
		}
		msg = &pb.SharedDataChunk{}
	}
	return up.CloseAndRecv()
}

// startGroup starts n node caches in one memberlist group, all reading from
// central, and waits until each sees all n.
func startGroup(t testing.TB, central []string, n int, maxBytes int64) []*Service {
	t.Helper()
	var out []*Service
	for i := range n {
		var join []string
		if i > 0 {
			join = []string{out[0].Peers.Addr()}
		}
		out = append(out, startCache(t, central, maxBytes, join, true, nil))
	}
	for _, s := range out {
		waitFor(t, "every node cache to see its peers", func() bool { return len(s.Peers.Members()) == n })
	}
	return out
}

func sum(caches []*Service, f func(Stats) uint64) uint64 {
	var n uint64
	for _, s := range caches {
		n += f(s.Cache.Stats())
	}
	return n
}

// Three node caches with memberlist on loopback, in front of a real 3-node
// gridd cluster: a level read through all three costs one central read; the
// two that do not own it get it from the owner.
func TestThreeNodeCachesReadALevelOnceFromCentral(t *testing.T) {
	r := startCentral(t, testcluster.Options{})
	caches := startGroup(t, r.c.Addrs(), 3, 64<<20)
	sid := r.session(t)
	v1 := payload(2<<20+3, 7)
	if lv := r.write(t, sid, true, v1); lv != 1 {
		t.Fatalf("first level is %d", lv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, s := range caches {
		h, data, err := download(ctx, dial(t, s.Addr()), get(sid, 1))
		if err != nil || !bytes.Equal(data, v1) {
			t.Fatalf("cache %d, level 1: %v (header %v)", i, err, h)
		}
	}
	if n := sum(caches, func(s Stats) uint64 { return s.UpstreamFetches }); n != 1 {
		t.Fatalf("three caches made %d central reads of one level, want 1", n)
	}
	if n := sum(caches, func(s Stats) uint64 { return s.PeerHits }); n != 2 {
		t.Fatalf("%d levels came from a peer, want 2 (every cache but the owner)", n)
	}

	// A new level, asked as "latest" from every cache at once: each sees
	// level 2, which is read once in full from the central cache.
	v2 := payload(1<<20, 8)
	if lv := r.write(t, sid, false, v2); lv != 2 {
		t.Fatalf("second level is %d", lv)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(caches))
	for _, s := range caches {
		c := dial(t, s.Addr())
		wg.Go(func() {
			h, data, err := download(ctx, c, get(sid, 0))
			if err == nil && (h.UpdateLevel != 2 || !bytes.Equal(data, v2)) {
				t.Errorf("latest after the update: level %d", h.UpdateLevel)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := sum(caches, func(s Stats) uint64 { return s.UpstreamFetches }); n != 2 {
		t.Fatalf("after level 2: %d central reads in full, want 2 (one a level)", n)
	}
}

// When the owner of a level does not answer, a node cache reads the central
// cache instead.
func TestPeerFailureFallsBackToCentral(t *testing.T) {
	r := startCentral(t, testcluster.Options{})
	caches := startGroup(t, r.c.Addrs(), 3, 64<<20)
	sid := r.session(t)
	data := payload(1000, 9)
	r.write(t, sid, true, data)
	k := key{sid, 1}
	owner, _ := caches[0].Peers.owner(k)
	var ownerSvc, reader *Service
	for _, s := range caches {
		if s.Peers.Name() == owner.name {
			ownerSvc = s
		} else {
			reader = s
		}
	}
	// The owner stays in the group but its gRPC server is gone.
	ownerSvc.grpc.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, got, err := download(ctx, dial(t, reader.Addr()), get(sid, 1)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with the owner down: %v", err)
	}
	if st := reader.Cache.Stats(); st.PeerFailures != 1 || st.UpstreamFetches != 1 {
		t.Fatalf("reader stats %+v: want one peer failure and one central read", st)
	}
}

// The central cache's leader is killed: a node cache that lists it first
// reads the latest level from the new leader, waiting out the election.
func TestCentralLeaderKilled(t *testing.T) {
	r := startCentral(t, testcluster.Options{})
	sid := r.session(t)
	data := payload(3000, 10)
	r.write(t, sid, true, data)
	leader := r.c.WaitLeader()
	addrs := r.c.Addrs()
	addrs[0], addrs[leader] = addrs[leader], addrs[0]
	s := startCache(t, addrs, 1<<20, nil, false, func(c *Config) { c.CentralRetry = 30 * time.Second })
	r.c.Kill(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, got, err := download(ctx, dial(t, s.Addr()), get(sid, 0))
	if err != nil || h.UpdateLevel != 1 || !bytes.Equal(got, data) {
		t.Fatalf("latest with the leader killed: %v (header %v)", err, h)
	}
}
