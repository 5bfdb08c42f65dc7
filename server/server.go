// Package server assembles one gridd node: the Raft node and its state
// machine, the leader's dispatcher, the gRPC services and the metrics
// listener. cmd/gridd and the tests start nodes through it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gridd/gridd/auth"
	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
)

// Server is a running gridd node.
type Server struct {
	cfg    Config
	log    *slog.Logger
	node   *cluster.Node
	disp   *dispatch.Dispatcher
	rpc    *rpc.Server
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
	// cacheGRPC serves only the Cache service, on Config.CacheAddr.
	cacheGRPC  *grpc.Server
	cacheLis   net.Listener
	metrics    *http.Server
	metricsLis net.Listener
	mx         *nodeMetrics
	limiter    *keyLimiter // nil: no rate limit per API key
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	done     chan struct{}
	doneOnce sync.Once
	err      error
}

// Start opens the data dir, bootstraps or joins the cluster, and serves.
// It returns once the node serves; joining an existing cluster goes on in
// the background, retried with backoff until a member answers.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	cfg.Logger = slog.New(requestIDHandler{cfg.Logger.Handler()})
	mx := newNodeMetrics()
	log := cfg.Logger.With("component", "server", "node", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for gRPC: %w", cfg.GRPCAddr, err)
	}
	advertise := cfg.AdvertiseGRPCAddr
	if advertise == "" {
		advertise = lis.Addr().String()
	}
	f := fsm.New(fsm.Options{})
	var raftTLSServer *tls.Config
	var raftTLSClient func(string) *tls.Config
	if cfg.TLS != nil {
		raftTLSServer, raftTLSClient = cfg.TLS.PeerServerConfig(), cfg.TLS.ClientConfigFor
	}
	node, err := cluster.Open(cluster.Config{
		ID: cfg.ID, DataDir: cfg.DataDir, RaftAddr: cfg.RaftAddr, AdvertiseRaftAddr: cfg.AdvertiseRaftAddr,
		GRPCAddr: advertise, Bootstrap: len(cfg.Join) == 0,
		HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout,
		LeaderLeaseTimeout: cfg.LeaderLeaseTimeout, SnapshotThreshold: cfg.SnapshotThreshold,
		SnapshotInterval: cfg.SnapshotInterval, TrailingLogs: cfg.TrailingLogs,
		Logger: cfg.Logger, Observer: mx, TLSServer: raftTLSServer, TLSClient: raftTLSClient,
	}, f)
	if err != nil {
		lis.Close()
		return nil, err
	}
	disp := dispatch.New(f, dispatch.Options{Logger: cfg.Logger,
		Preemption: cfg.Preemption, PlanInterval: cfg.SchedulerInterval, ClientExitGrace: cfg.ClientExitGrace,
		CloseSession: func(ctx context.Context, id string) error { return closeSession(ctx, node, id) }})
	rs := rpc.New(node, disp, rpc.Options{NodeID: cfg.ID, Logger: cfg.Logger, PeerCredentials: cfg.peerCredentials(),
		Limits: rpc.Limits{MaxPayloadBytes: cfg.MaxPayloadBytes, MaxBatchTasks: cfg.MaxBatchTasks,
			MaxPendingPerSession: cfg.MaxPendingPerSession, MaxSessionsPerApp: cfg.MaxSessionsPerApp},
		Cache: rpc.CacheLimits{MaxBytes: cfg.MaxSharedDataBytes, MaxTTL: cfg.MaxSharedDataTTL,
			DefaultTTL: cfg.DefaultSharedDataTTL, KeepLevels: cfg.SharedDataKeepLevels}})
	limiter := newRateLimiter(cfg) // shared by both listeners
	g := grpc.NewServer(append(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(rpc.MaxMsgSize), grpc.MaxSendMsgSize(rpc.MaxMsgSize), cfg.serverCredentials(),
		// Dead clients and workers are noticed within seconds, so their
		// tasks are redispatched and their streams released.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 5 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	}, append(interceptors(mx, cfg.Logger.With("component", "grpc", "node", cfg.ID)), append(authOptions(cfg), rateLimitOptions(limiter)...)...)...), cfg.GRPCServerOptions...)...)
	rs.Register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)

	runCtx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, node: node, disp: disp, rpc: rs, grpc: g, health: hs,
		lis: lis, cancel: cancel, done: make(chan struct{}), mx: mx, limiter: limiter}
	s.registerState()
	if cfg.CacheAddr != "" {
		if err := s.startCache(); err != nil {
			s.Kill()
			return nil, err
		}
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.fail(fmt.Errorf("gRPC server: %w", err))
		}
	}()
	go func() {
		defer s.wg.Done()
		s.followLeadership(runCtx)
	}()
	if cfg.MetricsAddr != "" {
		if err := s.startMetrics(); err != nil {
			s.Kill()
			return nil, err
		}
	}
	if len(cfg.Join) > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.join(runCtx, advertise)
		}()
	}
	log.Info("gridd node started", "grpc", advertise, "tls", cfg.TLS != nil, "raft", node.RaftAddr(), "data_dir", cfg.DataDir,
		"metrics", cfg.MetricsAddr, "join", cfg.Join)
	return s, nil
}

// authOptions checks API keys before any other interceptor runs, when keys
// are configured.
func authOptions(cfg Config) []grpc.ServerOption {
	if cfg.Auth == nil {
		return nil
	}
	log := cfg.Logger.With("component", "auth", "node", cfg.ID)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(cfg.Auth.UnaryInterceptor(log)),
		grpc.ChainStreamInterceptor(cfg.Auth.StreamInterceptor(log)),
	}
}

// serverCredentials secure the gRPC listeners with cfg.TLS, if set.
func (c Config) serverCredentials() grpc.ServerOption {
	if c.TLS == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.Creds(c.TLS.ServerCredentials())
}

// peerCredentials are for calls to other nodes.
func (c Config) peerCredentials() credentials.TransportCredentials {
	if c.TLS == nil {
		return insecure.NewCredentials()
	}
	return c.TLS.PeerCredentials()
}

// closeSession proposes CloseSession for the dispatcher's
// cleanup_on_client_exit, with a fresh request id: the leader decides alone,
// so there is no caller whose retry must be recognised.
func closeSession(ctx context.Context, node *cluster.Node, id string) error {
	resp, err := node.Propose(ctx, &fsmpb.Command{
		RequestId: ulid.Make().String(), NowUnixMs: time.Now().UnixMilli(),
		Cmd: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{SessionId: id}},
	})
	if err != nil {
		return err
	}
	return resp.Err
}

// startCache serves the Cache service alone on Config.CacheAddr.
func (s *Server) startCache() error {
	lis, err := net.Listen("tcp", s.cfg.CacheAddr)
	if err != nil {
		return fmt.Errorf("listen on %s for the cache (--cache-addr): %w", s.cfg.CacheAddr, err)
	}
	g := grpc.NewServer(append(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(rpc.MaxMsgSize), grpc.MaxSendMsgSize(rpc.MaxMsgSize), s.cfg.serverCredentials(),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 5 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	}, append(interceptors(s.mx, s.cfg.Logger.With("component", "grpc", "node", s.cfg.ID, "listener", "cache")), append(authOptions(s.cfg), rateLimitOptions(s.limiter)...)...)...), s.cfg.GRPCServerOptions...)...)
	s.rpc.RegisterCache(g)
	s.cacheGRPC, s.cacheLis = g, lis
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.fail(fmt.Errorf("cache gRPC server: %w", err))
		}
	}()
	return nil
}

// CacheAddr returns the address of the separate cache listener, or "".
func (s *Server) CacheAddr() string {
	if s.cacheLis == nil {
		return ""
	}
	return s.cacheLis.Addr().String()
}

// sharedDataSweep is how often the leader looks for expired shared data
// and abandoned uploads.
const sharedDataSweep = time.Second

// followLeadership activates the dispatcher and the shared data sweeper
// while this node leads.
func (s *Server) followLeadership(ctx context.Context) {
	var (
		stopSweep = func() {}
		sweeping  sync.WaitGroup
	)
	defer func() {
		stopSweep()
		sweeping.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			s.disp.Deactivate()
			return
		case leader := <-s.node.LeadershipChanges():
			stopSweep()
			sweeping.Wait()
			if leader {
				s.disp.Activate()
				sctx, cancel := context.WithCancel(ctx)
				stopSweep = cancel
				sweeping.Add(1)
				go func() {
					defer sweeping.Done()
					s.rpc.SweepSharedData(sctx, sharedDataSweep)
				}()
			} else {
				stopSweep = func() {}
				s.disp.Deactivate()
			}
		}
	}
}

// join asks the members in cfg.Join to add this node, until one of them
// (or the leader it forwards to) says yes. Join is idempotent, so a node
// that restarts with its state asks again harmlessly and refreshes its
// recorded addresses.
func (s *Server) join(ctx context.Context, grpcAddr string) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		for _, addr := range s.cfg.Join {
			err := s.joinVia(ctx, addr, grpcAddr)
			if err == nil {
				s.log.Info("joined the cluster", "via", addr)
				return
			}
			level := slog.LevelDebug
			if attempt%10 == 0 {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "join failed; retrying", "via", addr, "attempt", attempt, "err", err)
		}
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + jitter):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Server) joinVia(ctx context.Context, addr, grpcAddr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(s.cfg.peerCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.cfg.JoinAPIKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, auth.MDAPIKey, s.cfg.JoinAPIKey)
	}
	fresh := s.node.AwaitingAdmission()
	resp, err := griddpb.NewClusterClient(conn).Join(ctx, &griddpb.JoinRequest{
		Id: s.cfg.ID, RaftAddr: s.node.RaftAddr(), GrpcAddr: grpcAddr, Fresh: fresh,
	})
	if err != nil {
		return err
	}
	if fresh {
		if resp.AdmittedIndex == 0 {
			// Every fresh join changes the configuration; an answer without
			// an index comes from an older leader: ask again later.
			return fmt.Errorf("the leader did not re-add this node (no admitted index)")
		}
		s.node.Admit(resp.AdmittedIndex)
	}
	return nil
}

func (s *Server) fail(err error) {
	s.doneOnce.Do(func() {
		s.err = err
		if err != nil {
			s.log.Error("node stopped", "err", err)
		} else {
			s.log.Info("node stopped")
		}
		close(s.done)
	})
}

// GRPCAddr returns the address the gRPC listener is bound to.
func (s *Server) GRPCAddr() string { return s.lis.Addr().String() }

// Node returns the Raft node, for tests and status.
func (s *Server) Node() *cluster.Node { return s.node }

// Done is closed when the server stops, by Close, Kill or a fatal error.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns the fatal error that stopped the server, if any.
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// handOffTimeout bounds the leadership transfer of a graceful stop; raft
// gives up on its own after an election timeout, this is the backstop.
const handOffTimeout = 10 * time.Second

// Close stops gracefully: a leader first hands leadership to the most
// up-to-date follower (clients and workers move over without waiting for an
// election timeout), streams get a moment to finish, then Raft shuts down
// and the data dir is closed.
func (s *Server) Close() error {
	s.handOff()
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	s.cancel() // ends the dispatcher, so its streams end too
	if s.cacheGRPC != nil {
		s.cacheGRPC.Stop()
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
	}
	return s.shutdown(s.node.Close)
}

// handOff transfers leadership if this node leads. A failure is logged,
// not returned: the stop goes on, and the others elect a leader after the
// usual timeout.
func (s *Server) handOff() {
	ctx, cancel := context.WithTimeout(context.Background(), handOffTimeout)
	defer cancel()
	start := time.Now()
	id, err := s.node.HandOff(ctx)
	switch {
	case err != nil:
		s.log.Warn("could not hand leadership over before stopping; the others will elect a leader after the election timeout", "err", err)
	case id != "":
		s.log.Info("handed leadership over before stopping", "new_leader", id, "took", time.Since(start))
	}
}

// Kill stops at once, as close to kill -9 as a process can do to itself:
// connections drop, Raft stops without a leadership transfer or a final
// snapshot. Tests restart the node from its data dir afterwards.
func (s *Server) Kill() error {
	s.grpc.Stop()
	if s.cacheGRPC != nil {
		s.cacheGRPC.Stop()
	}
	s.cancel()
	return s.shutdown(s.node.Kill)
}

func (s *Server) shutdown(stopNode func() error) error {
	if s.metrics != nil {
		_ = s.metrics.Close()
	}
	err := stopNode()
	s.wg.Wait()
	s.rpc.Close()
	s.fail(nil)
	return err
}
