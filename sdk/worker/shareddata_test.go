package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/conn"
	"github.com/gridd/gridd/sdk/internal/shared"
)

// levelServer stands in for a node cache and for a one-node cluster's
// central cache: it serves levels from memory, speaking the Cache API's
// GetSharedData (and Cluster.Status, so the SDK takes it for the leader) on
// real gRPC over loopback, and counts what it was asked. The store against
// the real caches is covered by the integration tests.
type levelServer struct {
	griddpb.UnimplementedCacheServer
	mu      sync.Mutex
	levels  map[int64][]byte
	hidden  int           // answer FailedPrecondition this many more times
	corrupt bool          // send a wrong SHA-256
	gate    chan struct{} // when set, a Get waits for it before answering
	gets    atomic.Int64
}

func (s *levelServer) GetSharedData(req *griddpb.GetSharedDataRequest,
	st grpc.ServerStreamingServer[griddpb.SharedDataChunk]) error {
	s.gets.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-st.Context().Done():
			return st.Context().Err()
		}
	}
	s.mu.Lock()
	level := req.GetUpdateLevel()
	latest := int64(0)
	for l := range s.levels {
		latest = max(latest, l)
	}
	if level == 0 {
		level = latest
	}
	data, ok := s.levels[level]
	hidden := s.hidden > 0
	if hidden {
		s.hidden--
	}
	corrupt := s.corrupt
	s.mu.Unlock()
	switch {
	case hidden || level > latest:
		return status.Errorf(codes.FailedPrecondition, "level %d not written yet", level)
	case !ok:
		return status.Errorf(codes.NotFound, "level %d not kept", level)
	}
	sum := sha256.Sum256(data)
	if corrupt {
		sum[0]++
	}
	h := &griddpb.SharedDataHeader{SessionId: req.GetSessionId(), UpdateLevel: level,
		Size: int64(len(data)), Sha256: sum[:]}
	if err := st.Send(&griddpb.SharedDataChunk{Header: h}); err != nil {
		return err
	}
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), shared.ChunkSize)
		if err := st.Send(&griddpb.SharedDataChunk{Data: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

type leaderStatus struct {
	griddpb.UnimplementedClusterServer
}

func (leaderStatus) Status(context.Context, *griddpb.ClusterStatusRequest) (*griddpb.ClusterStatus, error) {
	return &griddpb.ClusterStatus{NodeId: "n1", State: "leader", Term: 1}, nil
}

func (s *levelServer) set(level int64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.levels[level] = data
}

// newTestStore starts a levelServer and a store using it as central cache
// and, with nodeCache, as node cache too.
func newTestStore(t *testing.T, nodeCache bool) (*sharedStore, *levelServer) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ls := &levelServer{levels: map[int64][]byte{}}
	griddpb.RegisterCacheServer(srv, ls)
	griddpb.RegisterClusterServer(srv, leaderStatus{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	opts := Options{Addrs: []string{lis.Addr().String()}, MinBackoff: time.Millisecond,
		MaxBackoff: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	if nodeCache {
		opts.NodeCacheAddr = lis.Addr().String()
	}
	pool, err := conn.New(conn.Config{Addrs: opts.Addrs, Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	w := &worker{opts: opts, log: opts.Logger, pool: pool}
	w.base, w.cancelBase = context.WithCancel(context.Background())
	s, err := newSharedStore(w)
	if err != nil {
		t.Fatal(err)
	}
	w.shared = s
	t.Cleanup(func() { w.cancelBase(); s.close() })
	return s, ls
}

func payload(level int64, n int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("level-%d;", level)), n)
}

// Tasks asking for one level at once share one download, and get the
// exact bytes, even across several chunks.
func TestSharedStoreOneFetchPerLevel(t *testing.T) {
	s, ls := newTestStore(t, true)
	want := payload(3, 300_000) // ~2.4 MB: three chunks
	ls.set(3, want)
	ls.gate = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			level, data, err := s.get(t.Context(), "s", 3)
			switch {
			case err != nil:
				errs <- err
			case level != 3 || !bytes.Equal(data, want):
				errs <- fmt.Errorf("got level %d, %d bytes", level, len(data))
			}
		})
	}
	// Let the callers queue up behind the first fetch, then answer.
	for ls.gets.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(ls.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ls.gets.Load(); n != 1 {
		t.Errorf("16 concurrent gets of one level made %d upstream requests, want 1", n)
	}
	if _, _, err := s.get(t.Context(), "s", 3); err != nil || ls.gets.Load() != 1 {
		t.Errorf("a held level went upstream again (err %v, %d requests)", err, ls.gets.Load())
	}
}

// "The latest" is asked upstream each time, but a level already held is
// not downloaded again: the header is enough, and the held buffer is
// handed out (the same memory, not a copy).
func TestSharedStoreLatestReusesHeldLevel(t *testing.T) {
	s, ls := newTestStore(t, true)
	ls.set(1, payload(1, 10))
	level, first, err := s.get(t.Context(), "s", 0)
	if err != nil || level != 1 {
		t.Fatalf("latest: level %d, err %v", level, err)
	}
	level, again, err := s.get(t.Context(), "s", 0)
	if err != nil || level != 1 || &again[0] != &first[0] {
		t.Fatalf("latest again: level %d, err %v, same buffer %v", level, err, err == nil && &again[0] == &first[0])
	}
	ls.set(2, payload(2, 10))
	level, data, err := s.get(t.Context(), "s", 0)
	if err != nil || level != 2 || !bytes.Equal(data, payload(2, 10)) {
		t.Fatalf("new latest: level %d, err %v", level, err)
	}
}

// Only the newest two levels of a session stay in memory.
func TestSharedStoreKeepsNewestTwoLevels(t *testing.T) {
	s, ls := newTestStore(t, false) // central cache only
	for l := int64(1); l <= 4; l++ {
		ls.set(l, payload(l, 4))
		if _, _, err := s.get(t.Context(), "s", l); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	var kept []int64
	for l := range s.sessions["s"].levels {
		kept = append(kept, l)
	}
	s.mu.Unlock()
	if len(kept) != 2 || !(kept[0]+kept[1] == 7 && max(kept[0], kept[1]) == 4) {
		t.Errorf("kept levels %v, want [3 4]", kept)
	}
}

// A level not visible yet is asked for again; a corrupt download fails
// with DataLoss and is not kept, so the next task fetches it again.
func TestSharedStoreWaitsForLevelAndChecksSHA(t *testing.T) {
	s, ls := newTestStore(t, false)
	ls.set(1, payload(1, 4))
	ls.hidden = 3
	if _, _, err := s.get(t.Context(), "s", 1); err != nil {
		t.Fatalf("a level visible after 3 FailedPrecondition answers: %v", err)
	}
	ls.set(2, payload(2, 4))
	ls.corrupt = true
	_, _, err := s.get(t.Context(), "s", 2)
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("corrupt download: err %v, want DataLoss", err)
	}
	ls.mu.Lock()
	ls.corrupt = false
	ls.mu.Unlock()
	if _, data, err := s.get(t.Context(), "s", 2); err != nil || !bytes.Equal(data, payload(2, 4)) {
		t.Fatalf("after a corrupt download, a new fetch: err %v", err)
	}
}

// A cache that accepts the request and then sends nothing (a paused node)
// is given up on after the idle time, with a retryable Unavailable.
func TestDownloadGivesUpOnASilentCache(t *testing.T) {
	s, ls := newTestStore(t, true)
	ls.set(1, payload(1, 4))
	ls.gate = make(chan struct{}) // never opened
	_, _, err := shared.Get(t.Context(), s.node, &griddpb.GetSharedDataRequest{SessionId: "s", UpdateLevel: 1},
		50*time.Millisecond, nil)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("silent cache: %v, want Unavailable", err)
	}
}
