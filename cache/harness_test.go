package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/internal/leakcheck"
	pb "github.com/gridd/gridd/rpc/griddpb"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fakeCentral is a stand-in upstream for unit tests: a real gRPC Cache
// server holding levels in memory, with the central cache's level rules.
// The integration tests use the real one (internal/testcluster).
type fakeCentral struct {
	pb.UnimplementedCacheServer
	addr string

	mu     sync.Mutex
	levels map[string]map[int64]*entry
	gate   chan struct{} // when set, downloads wait on it before sending

	gets     atomic.Int64 // every GetSharedData
	sentFull atomic.Int64 // downloads sent to their end
}

func startFake(t testing.TB) *fakeCentral {
	t.Helper()
	f := &fakeCentral{levels: map[string]map[int64]*entry{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pb.RegisterCacheServer(g, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
	f.addr = lis.Addr().String()
	return f
}

func (f *fakeCentral) put(session string, level int64, data []byte, expires int64) {
	sum := sha256.Sum256(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.levels[session] == nil {
		f.levels[session] = map[int64]*entry{}
	}
	f.levels[session][level] = &entry{key: key{session, level}, data: data, sha256: sum[:], expires: expires}
}

func (f *fakeCentral) GetSharedData(req *pb.GetSharedDataRequest, stream pb.Cache_GetSharedDataServer) error {
	f.gets.Add(1)
	f.mu.Lock()
	lv, gate := f.levels[req.SessionId], f.gate
	var latest int64
	for l := range lv {
		latest = max(latest, l)
	}
	want := req.UpdateLevel
	if want == 0 {
		want = latest
	}
	e := lv[want]
	f.mu.Unlock()
	switch {
	case lv == nil:
		return status.Errorf(codes.NotFound, "session %q has no shared data", req.SessionId)
	case want > latest:
		return status.Errorf(codes.FailedPrecondition, "level %d is above the latest %d", want, latest)
	case e == nil:
		return status.Errorf(codes.NotFound, "level %d is no longer kept", want)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	if err := sendEntry(e, stream.Send); err != nil {
		return err
	}
	f.sentFull.Add(1)
	return nil
}

// payload is deterministic test data of n bytes.
func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// startCache runs a node cache service on loopback; join, if not nil,
// makes it a memberlist member (an empty join starts a new group).
func startCache(t testing.TB, central []string, maxBytes int64, join []string, withPeers bool, edit func(*Config)) *Service {
	t.Helper()
	cfg := ServiceConfig{Addr: "127.0.0.1:0", Join: join, LocalPeers: true, Logger: testLogger(t),
		Cache: Config{MaxBytes: maxBytes, Central: central}}
	if withPeers {
		cfg.PeerBind = "127.0.0.1:0"
		cfg.Name = fmt.Sprintf("nc-%d", nameSeq.Add(1))
	}
	if edit != nil {
		edit(&cfg.Cache)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var nameSeq atomic.Int64

func dial(t testing.TB, addr string) pb.CacheClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return pb.NewCacheClient(cc)
}

// download reads a whole level, checking the stream's shape: header first,
// chunks of at most 1 MiB, as many bytes as announced, the right digest.
func download(ctx context.Context, c pb.CacheClient, req *pb.GetSharedDataRequest) (*pb.SharedDataHeader, []byte, error) {
	s, err := c.GetSharedData(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var h *pb.SharedDataHeader
	var data []byte
	for i := 0; ; i++ {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if (i == 0) != (m.Header != nil) {
			return nil, nil, fmt.Errorf("message %d: header present=%v", i, m.Header != nil)
		}
		if i == 0 {
			h = m.Header
		}
		if len(m.Data) > chunkSize {
			return nil, nil, fmt.Errorf("chunk of %d bytes", len(m.Data))
		}
		data = append(data, m.Data...)
	}
	if h == nil || int64(len(data)) != h.Size {
		return nil, nil, fmt.Errorf("got %d bytes, header %v", len(data), h)
	}
	if sum := sha256.Sum256(data); len(h.Sha256) > 0 && !bytes.Equal(sum[:], h.Sha256) {
		return nil, nil, errors.New("digest mismatch")
	}
	return h, data, nil
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
