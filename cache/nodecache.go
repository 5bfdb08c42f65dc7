// Package cache is the node cache: a pull-through cache of shared data on
// each compute node, in front of the central cache (the replicated Cache
// service of the gridd nodes). Workers read a session's shared data from
// their node's cache; a miss is fetched once, from the peer node cache that
// owns the key (rendezvous hashing over the memberlist group) or from the
// central cache, and kept in an LRU bounded in bytes.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/gridd/gridd/rpc/griddpb"
)

// Config sets up a NodeCache.
type Config struct {
	// MaxBytes bounds the cached bytes (payloads plus a small per-entry
	// overhead). A level larger than that is streamed through, not kept.
	MaxBytes int64
	// Central lists gRPC addresses of gridd nodes' Cache service; any node
	// answers (followers forward).
	Central []string
	// Peers, when set, is consulted on a miss before the central cache.
	Peers *Peers
	// DialOptions for connections to the central cache and to peers;
	// default: plaintext.
	DialOptions []grpc.DialOption
	// FetchTimeout bounds one fetch, which outlives the reader that started
	// it (others may wait on it). Default 5 minutes.
	FetchTimeout time.Duration
	// CentralRetry is how long a read keeps trying while no central cache
	// node answers (an election, a restart). Default 10s.
	CentralRetry time.Duration
	// SweepInterval is how often expired levels are dropped. Default 10s.
	SweepInterval time.Duration
	Logger        *slog.Logger
	// Now is the clock expiry is checked against; default time.Now.
	Now func() time.Time
}

// Stats are the node cache's counters since it started.
type Stats struct {
	Hits            uint64 // downloads served from memory
	Misses          uint64 // downloads of a level that was not in memory
	PeerHits        uint64 // levels fetched from a peer node cache
	PeerFailures    uint64 // peer fetches that failed and fell back to the central cache
	UpstreamFetches uint64 // levels read in full from the central cache
	LatestLookups   uint64 // level-0 (latest) requests resolved at the central cache
	PassThroughs    uint64 // downloads too large to keep, relayed from the central cache
	Evictions       uint64 // levels dropped for room
	Expirations     uint64 // levels dropped because their TTL passed
	BytesServed     uint64 // payload bytes sent to readers
	BytesFetched    uint64 // payload bytes received from peers and the central cache
	Bytes           int64  // bytes held now
	Entries         int    // levels held now
}

// NodeCache is the pull-through cache. Use it through Server, or
// GetSharedData in process.
type NodeCache struct {
	cfg     Config
	log     *slog.Logger
	central *central
	peers   *Peers
	conns   conns

	mu      sync.Mutex
	lru     *lru
	flights map[flightKey]*flight

	ctx    context.Context // ends at Close; bounds fetches
	cancel context.CancelFunc
	wg     sync.WaitGroup

	hits, misses, peerHits, peerFailures, upstreamFetches, latestLookups atomic.Uint64
	passThroughs, evictions, expirations, bytesServed, bytesFetched      atomic.Uint64
}

// flightKey separates fetches that may ask a peer from those that go
// straight to the central cache: a peer's request never waits on a fetch
// that asks a peer, so two caches that disagree about the owner cannot
// wait on each other.
type flightKey struct {
	key
	viaPeer bool
}

// flight is one fetch in progress; concurrent misses for its key wait on it.
type flight struct {
	done chan struct{}
	e    *entry
	err  error
}

// New checks cfg and starts the cache's sweeper. Close it.
func New(cfg Config) (*NodeCache, error) {
	if cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("node cache size %d: must be positive (like 1GB)", cfg.MaxBytes)
	}
	if len(cfg.Central) == 0 {
		return nil, errors.New("node cache: no central cache address (the Cache service of a gridd node)")
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	// Levels up to the API's chunk size come in one message, plus the header.
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4*chunkSize)))
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 5 * time.Minute
	}
	if cfg.CentralRetry <= 0 {
		cfg.CentralRetry = 10 * time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cen, err := newCentral(cfg.Central, cfg.DialOptions, cfg.CentralRetry)
	if err != nil {
		return nil, err
	}
	c := &NodeCache{cfg: cfg, log: cfg.Logger.With("component", "nodecache"), central: cen, peers: cfg.Peers,
		conns: conns{opts: cfg.DialOptions}, flights: make(map[flightKey]*flight)}
	c.lru = newLRU(cfg.MaxBytes, func(*entry) { c.evictions.Add(1) })
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.sweepLoop()
	return c, nil
}

// Close stops fetches and the sweeper and closes connections. It does not
// close cfg.Peers, which the caller started.
func (c *NodeCache) Close() error {
	c.cancel()
	c.wg.Wait()
	c.central.close()
	c.conns.closeAll()
	return nil
}

func (c *NodeCache) sweepLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.mu.Lock()
			n := c.lru.sweep(c.cfg.Now())
			c.mu.Unlock()
			c.expirations.Add(uint64(n))
			if c.peers != nil {
				live := make(map[string]bool)
				for _, m := range c.peers.Members() {
					live[m.grpc] = true
				}
				c.conns.retain(live)
			}
		}
	}
}

// Stats returns the counters.
func (c *NodeCache) Stats() Stats {
	c.mu.Lock()
	bytes, n := c.lru.used, c.lru.len()
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), PeerHits: c.peerHits.Load(),
		PeerFailures: c.peerFailures.Load(), UpstreamFetches: c.upstreamFetches.Load(),
		LatestLookups: c.latestLookups.Load(), PassThroughs: c.passThroughs.Load(),
		Evictions: c.evictions.Load(), Expirations: c.expirations.Load(), BytesServed: c.bytesServed.Load(),
		BytesFetched: c.bytesFetched.Load(), Bytes: bytes, Entries: n}
}

// peerHopKey marks a request from a peer node cache: it is answered from
// memory or the central cache, never by asking yet another peer.
const peerHopKey = "gridd-nodecache-hop"

// GetSharedData streams one level to send: the header (with the first
// chunk), then chunks of at most 1 MiB. Errors are gRPC statuses, the
// central cache's own for levels it does not have. fromPeer says the reader
// is another node cache.
func (c *NodeCache) GetSharedData(ctx context.Context, req *pb.GetSharedDataRequest, fromPeer bool, send func(*pb.SharedDataChunk) error) error {
	if err := validateGet(req); err != nil {
		return err
	}
	k := key{req.GetSessionId(), req.GetUpdateLevel()}
	if k.level == 0 {
		// The latest level is the central cache's to say: a cached "latest"
		// could be older than what this reader saw last.
		var err error
		if k.level, err = c.latest(ctx, k.session); err != nil {
			return err
		}
	}
	c.mu.Lock()
	e := c.lru.get(k, c.cfg.Now())
	c.mu.Unlock()
	if e != nil {
		c.hits.Add(1)
		return c.serve(e, send)
	}
	if req.GetLocalOnly() {
		return status.Errorf(codes.NotFound, "session %q level %d is not in this node cache's memory (local_only)", k.session, k.level)
	}
	c.misses.Add(1)
	e, err := c.fetch(ctx, k, fromPeer)
	if errors.Is(err, errTooLarge) {
		return c.passThrough(ctx, k, send)
	}
	if err != nil {
		return err
	}
	return c.serve(e, send)
}

func validateGet(req *pb.GetSharedDataRequest) error {
	switch {
	case req.GetSessionId() == "":
		return status.Error(codes.InvalidArgument, "session_id is empty: name the session whose shared data you want")
	case req.GetUpdateLevel() < 0:
		return status.Errorf(codes.InvalidArgument, "update_level %d is negative: ask for a level >= 1, or 0 for the latest", req.GetUpdateLevel())
	case req.GetLocalOnly() && req.GetUpdateLevel() == 0:
		return status.Error(codes.InvalidArgument, "local_only needs an update_level: only the central cache knows the latest")
	}
	return nil
}

func (c *NodeCache) serve(e *entry, send func(*pb.SharedDataChunk) error) error {
	if err := sendEntry(e, send); err != nil {
		return err
	}
	c.bytesServed.Add(uint64(len(e.data)))
	return nil
}

// latest asks the central cache which level is the latest, reading only
// the header of its download. It is never shared between readers, so each
// reader's answer is at least as new as the one before it.
func (c *NodeCache) latest(ctx context.Context, session string) (int64, error) {
	c.latestLookups.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // abandons the payload
	first, _, err := c.central.open(ctx, &pb.GetSharedDataRequest{SessionId: session})
	if status.Code(err) == codes.NotFound {
		c.mu.Lock()
		c.lru.dropSession(session)
		c.mu.Unlock()
	}
	if err != nil {
		return 0, err
	}
	if lv := first.GetHeader().GetUpdateLevel(); lv > 0 {
		return lv, nil
	}
	return 0, status.Errorf(codes.Internal, "the central cache answered level %d as the latest of %q", first.GetHeader().GetUpdateLevel(), session)
}

// fetch returns level k, fetching it once however many readers miss it at
// the same time. The fetch runs on its own, bounded by FetchTimeout and
// Close: a reader that gives up does not fail the others.
func (c *NodeCache) fetch(ctx context.Context, k key, fromPeer bool) (*entry, error) {
	var owner member
	viaPeer := false
	if c.peers != nil && !fromPeer {
		var self bool
		owner, self = c.peers.owner(k)
		viaPeer = !self && owner.grpc != ""
	}
	fk := flightKey{k, viaPeer}
	c.mu.Lock()
	if e := c.lru.get(k, c.cfg.Now()); e != nil { // a fetch just ended
		c.mu.Unlock()
		return e, nil
	}
	fl, ok := c.flights[fk]
	if !ok {
		fl = &flight{done: make(chan struct{})}
		c.flights[fk] = fl
		c.wg.Add(1)
		go c.run(fk, fl, owner)
	}
	c.mu.Unlock()
	select {
	case <-fl.done:
		return fl.e, fl.err
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (c *NodeCache) run(fk flightKey, fl *flight, owner member) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.FetchTimeout)
	defer cancel()
	var e *entry
	var err error
	if fk.viaPeer {
		e, err = c.fromPeer(ctx, fk.key, owner)
	}
	if !fk.viaPeer || err != nil && !authoritative(err) && !errors.Is(err, errTooLarge) {
		e, err = c.fromCentral(ctx, fk.key)
	}
	if err != nil && !errors.Is(err, errTooLarge) && ctx.Err() == nil && c.ctx.Err() == nil {
		c.log.Debug("fetch failed", "session", fk.session, "level", fk.level, "err", err)
	}
	c.mu.Lock()
	if err == nil {
		c.lru.add(e, c.cfg.Now())
	}
	delete(c.flights, fk)
	c.mu.Unlock()
	fl.e, fl.err = e, err
	close(fl.done)
}

// authoritative errors are the central cache's answer, relayed by a peer:
// asking the central cache again would get the same.
func authoritative(err error) bool {
	switch status.Code(err) {
	case codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument:
		return true
	}
	return false
}

func (c *NodeCache) fromPeer(ctx context.Context, k key, owner member) (*entry, error) {
	cc, err := c.conns.get(owner.grpc)
	if err != nil {
		return nil, err
	}
	ctx = metadata.AppendToOutgoingContext(ctx, peerHopKey, "1")
	first, stream, err := openStream(ctx, pb.NewCacheClient(cc), &pb.GetSharedDataRequest{SessionId: k.session, UpdateLevel: k.level})
	if err == nil {
		var e *entry
		if e, err = readEntry(k.session, first, stream, c.cfg.MaxBytes); err == nil {
			c.peerHits.Add(1)
			c.bytesFetched.Add(uint64(len(e.data)))
			return e, nil
		}
	}
	if !authoritative(err) && !errors.Is(err, errTooLarge) {
		c.peerFailures.Add(1)
		c.log.Warn("peer node cache failed; reading the central cache", "peer", owner.name, "addr", owner.grpc,
			"session", k.session, "level", k.level, "err", err)
	}
	return nil, err
}

func (c *NodeCache) fromCentral(ctx context.Context, k key) (*entry, error) {
	first, stream, err := c.central.open(ctx, &pb.GetSharedDataRequest{SessionId: k.session, UpdateLevel: k.level})
	if err != nil {
		return nil, err
	}
	e, err := readEntry(k.session, first, stream, c.cfg.MaxBytes)
	if err != nil {
		return nil, err
	}
	c.upstreamFetches.Add(1)
	c.bytesFetched.Add(uint64(len(e.data)))
	return e, nil
}

// passThrough relays a level too large to keep from the central cache to
// one reader, chunk by chunk, holding at most a chunk in memory.
func (c *NodeCache) passThrough(ctx context.Context, k key, send func(*pb.SharedDataChunk) error) error {
	c.passThroughs.Add(1)
	first, stream, err := c.central.open(ctx, &pb.GetSharedDataRequest{SessionId: k.session, UpdateLevel: k.level})
	if err != nil {
		return err
	}
	n, err := relay(first, stream, send)
	c.bytesFetched.Add(uint64(n))
	c.bytesServed.Add(uint64(n))
	return err
}
