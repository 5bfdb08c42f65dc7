package cache

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/gridd/gridd/rpc/griddpb"
)

func get(session string, level int64) *pb.GetSharedDataRequest {
	return &pb.GetSharedDataRequest{SessionId: session, UpdateLevel: level}
}

func TestHitMissAndLevelRules(t *testing.T) {
	ctx := context.Background()
	f := startFake(t)
	v1 := payload(3<<20+5, 1) // several chunks
	f.put("s", 1, v1, 0)
	s := startCache(t, []string{f.addr}, 64<<20, nil, false, nil)
	c := dial(t, s.Addr())

	for i, want := range []struct{ hits, misses, fetches uint64 }{{0, 1, 1}, {1, 1, 1}} {
		h, data, err := download(ctx, c, get("s", 1))
		if err != nil || h.UpdateLevel != 1 || !bytes.Equal(data, v1) {
			t.Fatalf("get %d of level 1: %v, header %v", i, err, h)
		}
		if st := s.Cache.Stats(); st.Hits != want.hits || st.Misses != want.misses || st.UpstreamFetches != want.fetches {
			t.Fatalf("after get %d: %+v, want %+v", i, st, want)
		}
	}

	// Level 0 (latest) always asks the central cache which level is the
	// latest, then serves it from memory when it has it.
	if h, _, err := download(ctx, c, get("s", 0)); err != nil || h.UpdateLevel != 1 {
		t.Fatalf("latest: %v, header %v", err, h)
	}
	if st := s.Cache.Stats(); st.LatestLookups != 1 || st.UpstreamFetches != 1 || st.Hits != 2 {
		t.Fatalf("latest of a cached level: %+v", st)
	}
	v2 := payload(100, 2)
	f.put("s", 2, v2, 0)
	if h, data, err := download(ctx, c, get("s", 0)); err != nil || h.UpdateLevel != 2 || !bytes.Equal(data, v2) {
		t.Fatalf("latest after an update: %v, header %v (want level 2)", err, h)
	}

	// A level above the latest, and unknown sessions, get the central
	// cache's answer.
	if _, _, err := download(ctx, c, get("s", 3)); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("level above the latest: %v, want FailedPrecondition", err)
	}
	if _, _, err := download(ctx, c, get("nope", 1)); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown session: %v, want NotFound", err)
	}
	if st := s.Cache.Stats(); st.Entries != 2 {
		t.Fatalf("errors were cached: %+v", st)
	}
}

func TestExpiredLevelIsFetchedAgain(t *testing.T) {
	ctx := context.Background()
	f := startFake(t)
	var now atomic.Int64
	now.Store(1_000_000)
	f.put("s", 1, payload(10, 1), 1_005_000)
	s := startCache(t, []string{f.addr}, 1<<20, nil, false, func(c *Config) {
		c.Now = func() time.Time { return time.UnixMilli(now.Load()) }
	})
	c := dial(t, s.Addr())
	for range 2 {
		if h, _, err := download(ctx, c, get("s", 1)); err != nil || h.ExpiresUnixMs != 1_005_000 {
			t.Fatalf("get: %v, header %v (want the central expiry)", err, h)
		}
	}
	now.Store(1_005_000)
	if _, _, err := download(ctx, c, get("s", 1)); err != nil {
		t.Fatal(err)
	}
	if st := s.Cache.Stats(); st.UpstreamFetches != 2 || st.Hits != 1 {
		t.Fatalf("an expired level must be fetched again: %+v", st)
	}
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	ctx := context.Background()
	f := startFake(t)
	data := payload(2<<20, 3)
	f.put("s", 1, data, 0)
	f.gate = make(chan struct{})
	s := startCache(t, []string{f.addr}, 64<<20, nil, false, nil)
	c := dial(t, s.Addr())
	const readers = 16
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Go(func() {
			_, got, err := download(ctx, c, get("s", 1))
			if err == nil && !bytes.Equal(got, data) {
				err = status.Error(codes.DataLoss, "wrong bytes")
			}
			errs <- err
		})
	}
	waitFor(t, "every reader to miss", func() bool { return s.Cache.Stats().Misses == readers })
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.gets.Load(); n != 1 {
		t.Fatalf("%d concurrent misses made %d central reads, want 1", readers, n)
	}
}

func TestTooLargeLevelStreamsThrough(t *testing.T) {
	ctx := context.Background()
	f := startFake(t)
	big := payload(3<<20, 4)
	f.put("s", 1, big, 0)
	s := startCache(t, []string{f.addr}, 1<<20, nil, false, nil)
	c := dial(t, s.Addr())
	for range 2 {
		if _, data, err := download(ctx, c, get("s", 1)); err != nil || !bytes.Equal(data, big) {
			t.Fatalf("a level larger than the cache: %v", err)
		}
	}
	if st := s.Cache.Stats(); st.Entries != 0 || st.PassThroughs != 2 || st.Bytes != 0 {
		t.Fatalf("a level larger than the cache was kept: %+v", st)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	f := startFake(t)
	f.put("s", 1, payload(10, 5), 0)
	s := startCache(t, []string{f.addr}, 1<<20, nil, false, nil)
	c := dial(t, s.Addr())
	for _, tc := range []struct {
		name string
		req  *pb.GetSharedDataRequest
		code codes.Code
	}{
		{"no session", get("", 1), codes.InvalidArgument},
		{"negative level", get("s", -1), codes.InvalidArgument},
		{"local_only latest", &pb.GetSharedDataRequest{SessionId: "s", LocalOnly: true}, codes.InvalidArgument},
		{"local_only miss", &pb.GetSharedDataRequest{SessionId: "s", UpdateLevel: 1, LocalOnly: true}, codes.NotFound},
	} {
		if _, _, err := download(ctx, c, tc.req); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	up, err := c.SetSharedData(ctx)
	if err == nil {
		_, err = up.CloseAndRecv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("SetSharedData on a node cache: %v, want Unimplemented", err)
	}
	if _, err := c.DeleteSharedData(ctx, &pb.DeleteSharedDataRequest{SessionId: "s"}); status.Code(err) != codes.Unimplemented {
		t.Errorf("DeleteSharedData on a node cache: %v, want Unimplemented", err)
	}
	if n := f.gets.Load(); n != 0 {
		t.Errorf("bad input reached the central cache %d times", n)
	}
	if st := s.Cache.Stats(); st.Entries != 0 || st.Misses != 0 {
		t.Errorf("bad input changed the cache: %+v", st)
	}
	// local_only answers from memory once the level is there.
	if _, _, err := download(ctx, c, get("s", 1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := download(ctx, c, &pb.GetSharedDataRequest{SessionId: "s", UpdateLevel: 1, LocalOnly: true}); err != nil {
		t.Fatalf("local_only hit: %v", err)
	}
}

func TestCentralFailoverAndDeletedSession(t *testing.T) {
	ctx := context.Background()
	f := startFake(t)
	f.put("s", 1, payload(10, 6), 0)
	// The first address refuses connections: the cache moves to the next.
	s := startCache(t, []string{"127.0.0.1:1", f.addr}, 1<<20, nil, false, nil)
	c := dial(t, s.Addr())
	if _, _, err := download(ctx, c, get("s", 0)); err != nil {
		t.Fatalf("with one central address down: %v", err)
	}
	// The central cache dropped the session (closed): asking for the
	// latest says so and drops what this cache held.
	f.mu.Lock()
	delete(f.levels, "s")
	f.mu.Unlock()
	if _, _, err := download(ctx, c, get("s", 0)); status.Code(err) != codes.NotFound {
		t.Fatalf("latest of a deleted session: %v, want NotFound", err)
	}
	if st := s.Cache.Stats(); st.Entries != 0 {
		t.Fatalf("levels of a deleted session kept: %+v", st)
	}
}

func TestNoCentralAnswersIsUnavailable(t *testing.T) {
	s := startCache(t, []string{"127.0.0.1:1"}, 1<<20, nil, false, func(c *Config) { c.CentralRetry = 300 * time.Millisecond })
	c := dial(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := download(ctx, c, get("s", 1))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("no central cache: %v, want Unavailable", err)
	}
	t.Log(err)
}
