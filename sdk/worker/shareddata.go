package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/conn"
	"github.com/gridd/gridd/sdk/internal/shared"
)

// Bounds of the in-process shared-data store.
const (
	// keptLevels per session: the level tasks need now and the one before,
	// for tasks of the previous iteration still running or retried.
	keptLevels = 2
	// keptSessions: a worker is bound to one session at a time, rarely
	// more; the least recently used session's data is dropped first. With
	// levels of up to 256 MiB, this bounds the store to about 1 GiB.
	keptSessions = 2
	// levelWait is how long a level not visible yet (NotFound,
	// FailedPrecondition) is asked for again: a client usually submits
	// tasks right after the update, and a node cache or a lagging path
	// may not have it at once.
	levelWait = 5 * time.Second
	// fetchTimeout bounds one fetch, retries across failovers included.
	fetchTimeout = 2 * time.Minute
	// nodeCacheTimeout bounds the node cache's answer before the central
	// cache is asked instead.
	nodeCacheTimeout = 30 * time.Second
	// stallTimeout: a download that receives nothing for this long is
	// abandoned and tried again (elsewhere, for the central cache): a
	// paused node keeps its connections open.
	stallTimeout = 10 * time.Second
)

// sharedStore keeps the shared-data levels this worker fetched, so that a
// level crosses the network once per worker however many tasks use it.
// Concurrent requests for a level wait on one fetch.
type sharedStore struct {
	w    *worker
	node griddpb.CacheClient // nil without a node cache
	nc   *grpc.ClientConn
	wg   sync.WaitGroup // running fetches

	mu       sync.Mutex
	sessions map[string]*sessionData
	tick     uint64 // orders sessions by last use
}

type sessionData struct {
	levels map[int64]*fetch // exact levels, fetched or being fetched
	latest *fetch           // a running resolution of "the latest" (level 0)
	used   uint64
}

// fetch is one download; done is closed when level, data and err are set.
// ok (guarded by sharedStore.mu) says it succeeded: its data is usable.
type fetch struct {
	done  chan struct{}
	ok    bool
	level int64
	sha   []byte
	data  []byte
	err   error
}

func newSharedStore(w *worker) (*sharedStore, error) {
	s := &sharedStore{w: w, sessions: make(map[string]*sessionData)}
	if w.opts.NodeCacheAddr == "" {
		return s, nil
	}
	creds := insecure.NewCredentials()
	if w.opts.TLS != nil {
		creds = credentials.NewTLS(w.opts.TLS)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, w.opts.DialOptions...)
	nc, err := grpc.NewClient(w.opts.NodeCacheAddr, opts...)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "gridd worker: node cache address %q: %v",
			w.opts.NodeCacheAddr, err)
	}
	s.nc, s.node = nc, griddpb.NewCacheClient(nc)
	return s, nil
}

// close waits for running fetches (the worker's base context is cancelled
// by then, so they end quickly) and closes the node cache connection.
func (s *sharedStore) close() {
	s.wg.Wait()
	if s.nc != nil {
		_ = s.nc.Close()
	}
}

// get returns level want of session's shared data (0: the latest now) and
// the level it is. Each call for the latest asks upstream which level that
// is, but downloads it only if this worker does not hold it.
func (s *sharedStore) get(ctx context.Context, session string, want int64) (int64, []byte, error) {
	s.mu.Lock()
	sd := s.sessions[session]
	if sd == nil {
		sd = &sessionData{levels: make(map[int64]*fetch)}
		s.sessions[session] = sd
	}
	s.tick++
	sd.used = s.tick
	s.pruneSessionsLocked()
	f := sd.latest
	if want > 0 {
		f = sd.levels[want]
	}
	if f == nil {
		f = &fetch{done: make(chan struct{})}
		if want > 0 {
			sd.levels[want] = f
		} else {
			sd.latest = f
		}
		s.wg.Go(func() { s.run(f, session, want) })
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.level, f.data, f.err
	case <-ctx.Done():
		return 0, nil, context.Cause(ctx)
	}
}

// run performs a fetch and files its outcome: a failed fetch is forgotten,
// so that the next task tries again.
func (s *sharedStore) run(f *fetch, session string, want int64) {
	ctx, cancel := context.WithTimeout(s.w.base, fetchTimeout)
	defer cancel()
	start := time.Now()
	h, data, err := s.fetch(ctx, session, want)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(f.done)
	sd := s.sessions[session]
	if err != nil {
		f.err = fmt.Errorf("gridd worker: shared data of session %s level %s: %w", session, levelName(want), err)
		s.w.log.Warn("shared data fetch failed", "session", session, "level", want, "err", err)
		if sd != nil {
			if want > 0 && sd.levels[want] == f {
				delete(sd.levels, want)
			}
			if want == 0 && sd.latest == f {
				sd.latest = nil
			}
		}
		return
	}
	f.ok, f.level, f.sha, f.data = true, h.GetUpdateLevel(), h.GetSha256(), data
	if sd == nil { // pruned meanwhile: the callers waiting still get it
		return
	}
	if want == 0 {
		if sd.latest == f {
			sd.latest = nil
		}
		if sd.levels[f.level] == nil {
			sd.levels[f.level] = f
		}
	}
	s.w.log.Debug("shared data fetched", "session", session, "level", f.level, "bytes", len(data),
		"in", time.Since(start))
	pruneLevels(sd)
}

// held returns the data of session's level if this worker holds it with
// that SHA-256: then a download of the latest can stop at its header.
func (s *sharedStore) held(session string, h *griddpb.SharedDataHeader) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	sd := s.sessions[session]
	if sd == nil {
		return nil
	}
	f := sd.levels[h.GetUpdateLevel()]
	if f == nil || !f.ok || !bytes.Equal(f.sha, h.GetSha256()) {
		return nil
	}
	return f.data
}

// fetch downloads a level: from the node cache when there is one, else or
// when it fails from the central cache (the leader), asking again for a
// level not visible yet for up to levelWait.
func (s *sharedStore) fetch(ctx context.Context, session string, want int64) (*griddpb.SharedDataHeader, []byte, error) {
	req := &griddpb.GetSharedDataRequest{SessionId: session, UpdateLevel: want}
	var keep func(*griddpb.SharedDataHeader) []byte
	if want == 0 {
		keep = func(h *griddpb.SharedDataHeader) []byte { return s.held(session, h) }
	}
	bo := conn.NewBackoff(s.w.opts.MinBackoff, s.w.opts.MaxBackoff)
	until := time.Now().Add(levelWait)
	for {
		h, data, err := s.fetchOnce(ctx, req, keep)
		if err == nil {
			if want > 0 && h.GetUpdateLevel() != want {
				return nil, nil, status.Errorf(codes.Internal, "asked for level %d, the cache sent level %d",
					want, h.GetUpdateLevel())
			}
			return h, data, nil
		}
		switch status.Code(err) {
		case codes.NotFound, codes.FailedPrecondition:
			if time.Now().Before(until) {
				if conn.Wait(ctx, bo.Next()) != nil {
					return nil, nil, err
				}
				continue
			}
		}
		return nil, nil, err
	}
}

func (s *sharedStore) fetchOnce(ctx context.Context, req *griddpb.GetSharedDataRequest,
	keep func(*griddpb.SharedDataHeader) []byte) (*griddpb.SharedDataHeader, []byte, error) {
	if s.node != nil {
		nctx, cancel := context.WithTimeout(s.w.outgoing(ctx), nodeCacheTimeout)
		if s.w.opts.APIKey != "" {
			nctx = metadata.AppendToOutgoingContext(nctx, conn.MDAPIKey, s.w.opts.APIKey)
		}
		h, data, err := shared.Get(nctx, s.node, req, stallTimeout, keep)
		cancel()
		if err == nil {
			return h, data, nil
		}
		if ctx.Err() != nil {
			return nil, nil, err
		}
		s.w.log.Info("node cache failed; asking the central cache", "addr", s.w.opts.NodeCacheAddr,
			"session", req.GetSessionId(), "level", req.GetUpdateLevel(), "err", err)
	}
	var h *griddpb.SharedDataHeader
	var data []byte
	const op = "get from the central cache"
	err := s.w.pool.Call(ctx, op, conn.CallOptions{MinBackoff: s.w.opts.MinBackoff, MaxBackoff: s.w.opts.MaxBackoff},
		func(ctx context.Context, cc *grpc.ClientConn) error {
			var err error
			h, data, err = shared.Get(s.w.outgoing(ctx), griddpb.NewCacheClient(cc), req, stallTimeout, keep)
			return err
		})
	if err != nil {
		var ce *conn.CtxError
		if errors.As(err, &ce) && ce.Last != nil {
			// The fetch timed out retrying: the last answer says why.
			return nil, nil, fmt.Errorf("%w (gave up after %v)", ce.Last, fetchTimeout)
		}
		return nil, nil, err
	}
	return h, data, nil
}

func levelName(l int64) string {
	if l == 0 {
		return "latest"
	}
	return fmt.Sprint(l)
}

// pruneLevels keeps the newest keptLevels levels that hold data; fetches
// still running or failed are left alone (they remove themselves).
func pruneLevels(sd *sessionData) {
	var done []int64
	for l, f := range sd.levels {
		if f.ok {
			done = append(done, l)
		}
	}
	if len(done) <= keptLevels {
		return
	}
	sort.Slice(done, func(i, j int) bool { return done[i] > done[j] })
	for _, l := range done[keptLevels:] {
		delete(sd.levels, l)
	}
}

// pruneSessionsLocked drops the least recently used sessions' data beyond
// keptSessions; fetches running for them complete for their waiters.
func (s *sharedStore) pruneSessionsLocked() {
	for len(s.sessions) > keptSessions {
		var oldest string
		var used uint64
		for id, sd := range s.sessions {
			if oldest == "" || sd.used < used {
				oldest, used = id, sd.used
			}
		}
		delete(s.sessions, oldest)
	}
}
