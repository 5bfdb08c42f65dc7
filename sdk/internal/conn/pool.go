// Package conn holds what the client and worker SDKs share: one gRPC
// connection per cluster node, leader discovery, backoff and the rules for
// which failures are worth retrying.
package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
)

// ErrClosed is returned by a Pool used after Close.
var ErrClosed = status.Error(codes.Canceled, "gridd: connection pool closed")

// ErrNoLeader is wrapped (with codes.Unavailable) by Discover when nodes
// answer but none is the leader: an election is under way and will end
// within an election timeout, so callers poll at the shortest backoff
// instead of letting it grow.
var ErrNoLeader = errors.New("no leader elected")

// Metadata header names understood by gridd.
const (
	MDAPIKey    = "api_key"
	MDSessionID = "sessionid"
	MDWorkerID  = "workerid"
	MDNode      = "node"
	MDPod       = "pod"
)

// DefaultProbeTimeout bounds one Cluster.Status probe during discovery.
const DefaultProbeTimeout = 2 * time.Second

// maxRecvMsgSize lets a result batch of large payloads through; gRPC's
// default of 4 MiB is the size of a single task payload.
const maxRecvMsgSize = 64 << 20

// Config configures a Pool.
type Config struct {
	// Addrs are the gRPC addresses to start discovery from. Members learned
	// from Cluster.Status answers are added to them.
	Addrs []string
	// TLS enables transport security; nil means plaintext.
	TLS *tls.Config
	// APIKey, when set, is sent as the api_key header on every call.
	APIKey string
	// ProbeTimeout bounds each Cluster.Status probe; 0 means 2 s.
	ProbeTimeout time.Duration
	Logger       *slog.Logger
	// DialOptions are appended to the pool's own.
	DialOptions []grpc.DialOption
}

// Pool keeps one lazily connected grpc.ClientConn per node address and
// remembers which one is the leader. It is safe for concurrent use.
type Pool struct {
	cfg      Config
	log      *slog.Logger
	dialOpts []grpc.DialOption

	// discoverMu lets one goroutine discover at a time, so a leader failure
	// seen by many streams costs one round of probes, not one per stream.
	discoverMu sync.Mutex

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	known  []string
	leader string
	// target is what discovery learned along with leader: whom it leads
	// to and in which term (see Target).
	target Target
	nodes  map[string]*nodeState // per address, for leader watches
	closed bool
}

// New returns a Pool; it connects nothing yet.
func New(cfg Config) (*Pool, error) {
	if len(cfg.Addrs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "gridd: no server address given")
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	key := cfg.APIKey
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// gRPC's own reconnection backoff starts at 1 s and grows to 2 min;
		// a node restarted after a crash must be reachable again within
		// the SDK's backoff, not minutes later.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  DefaultMinBackoff,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   DefaultMaxBackoff,
			},
			MinConnectTimeout: cfg.ProbeTimeout,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(withAPIKey(ctx, key), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc,
			cc *grpc.ClientConn, method string, streamer grpc.Streamer,
			opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(withAPIKey(ctx, key), desc, cc, method, opts...)
		}),
	}
	opts = append(opts, cfg.DialOptions...)
	p := &Pool{
		cfg:      cfg,
		log:      log.With("component", "sdk.conn"),
		dialOpts: opts,
		conns:    make(map[string]*grpc.ClientConn),
		nodes:    make(map[string]*nodeState),
	}
	for _, a := range cfg.Addrs {
		p.learnLocked(a)
	}
	return p, nil
}

func withAPIKey(ctx context.Context, key string) context.Context {
	if key == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, MDAPIKey, key)
}

// Leader returns the connection to the current leader, discovering it first
// when it is unknown.
func (p *Pool) Leader(ctx context.Context) (*grpc.ClientConn, string, error) {
	cc, t, err := p.LeaderTarget(ctx)
	return cc, t.Addr, err
}

// Target is the node a stream is opened to and the leader it leads to:
// the node itself, or the leader a follower forwards to when the leader's
// own address is not reachable from here. Term is the Raft term in which
// discovery saw that leader; a leader named in a later term supersedes it
// (see Watch).
type Target struct {
	Addr     string
	LeaderID string
	Term     uint64
}

// LeaderTarget is Leader with what discovery knew about the leader.
func (p *Pool) LeaderTarget(ctx context.Context) (*grpc.ClientConn, Target, error) {
	p.mu.Lock()
	t := p.target
	if p.leader == "" {
		t = Target{}
	}
	p.mu.Unlock()
	if t.Addr == "" {
		var err error
		if t, err = p.discover(ctx); err != nil {
			return nil, Target{}, err
		}
	}
	cc, err := p.Conn(t.Addr)
	return cc, t, err
}

// Forget drops addr as the leader, so the next Leader call rediscovers.
// Callers pass the address whose call failed; a leader found meanwhile by
// another goroutine is kept.
func (p *Pool) Forget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leader == addr {
		p.leader = ""
	}
}

// Conn returns the connection to addr, creating it on first use.
func (p *Pool) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, p.dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("gridd: connect %s: %w", addr, err)
	}
	p.conns[addr] = cc
	return cc, nil
}

// Known returns the addresses discovery asks, seeds first.
func (p *Pool) Known() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.known)
}

func (p *Pool) learnLocked(addr string) {
	if addr != "" && !slices.Contains(p.known, addr) {
		p.known = append(p.known, addr)
	}
}

// Close closes every connection. Streams and calls on them fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.leader = ""
	p.target = Target{}
	var errs []error
	for _, cc := range p.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	clear(p.conns)
	return errors.Join(errs...)
}

// Probe asks the node at addr for its view of the cluster.
func (p *Pool) Probe(ctx context.Context, addr string) (*griddpb.ClusterStatus, error) {
	cc, err := p.Conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProbeTimeout)
	defer cancel()
	st, err := griddpb.NewClusterClient(cc).Status(ctx, &griddpb.ClusterStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("gridd: status of %s: %w", addr, err)
	}
	return st, nil
}
