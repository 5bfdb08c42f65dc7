package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/gridd/gridd/tlsconf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// ServiceConfig is everything `gridd nodecache` runs.
type ServiceConfig struct {
	// Addr is the gRPC listen address of the Cache service (workers and
	// peers read here).
	Addr string
	// AdvertiseAddr is the gRPC address peers dial; default Addr (with a
	// wildcard host replaced by this member's memberlist IP).
	AdvertiseAddr string
	// MetricsAddr serves /metrics and /healthz; "" disables.
	MetricsAddr string
	// PeerBind is the memberlist address; "" runs without peers (every miss
	// reads the central cache).
	PeerBind      string
	PeerAdvertise string
	Join          []string
	Name          string
	// LocalPeers selects short memberlist intervals (one machine, tests).
	LocalPeers bool
	// Cache configures the cache itself; Peers and Logger are filled in.
	Cache  Config
	Logger *slog.Logger

	// TLS, if set, secures the Cache listener and the connections to the
	// central cache and to peers (Cache.DialOptions is then set from it),
	// verified against its CA; peers' certificates must name the gRPC
	// addresses they advertise.
	TLS *tlsconf.Source
	// GossipKey encrypts memberlist traffic; see PeersConfig.SecretKey.
	GossipKey []byte
}

// Service is a running node cache: gRPC server, memberlist member, cache
// and metrics.
type Service struct {
	Cache   *NodeCache
	Peers   *Peers // nil without PeerBind
	log     *slog.Logger
	lis     net.Listener
	grpc    *grpc.Server
	metrics *http.Server
	served  chan struct{}
}

// Start listens, joins the peers and serves until Close.
func Start(cfg ServiceConfig) (_ *Service, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{log: cfg.Logger.With("component", "nodecache"), served: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeParts()
		}
	}()
	if s.lis, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s for the node cache (--addr): %w", cfg.Addr, err)
	}
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = s.lis.Addr().String()
	}
	if cfg.PeerBind != "" {
		s.Peers, err = StartPeers(PeersConfig{Name: cfg.Name, BindAddr: cfg.PeerBind, AdvertiseAddr: cfg.PeerAdvertise,
			GRPCAddr: adv, Join: cfg.Join, Local: cfg.LocalPeers, SecretKey: cfg.GossipKey, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
	}
	cc := cfg.Cache
	cc.Peers, cc.Logger = s.Peers, cfg.Logger
	var creds grpc.ServerOption = grpc.EmptyServerOption{}
	if cfg.TLS != nil {
		cc.DialOptions = append([]grpc.DialOption{grpc.WithTransportCredentials(cfg.TLS.PeerCredentials())}, cc.DialOptions...)
		creds = grpc.Creds(cfg.TLS.ServerCredentials())
	}
	if s.Cache, err = New(cc); err != nil {
		return nil, err
	}
	// Stream workers reuse goroutines whose stacks have already grown: a
	// hit is short enough that a fresh goroutine per stream shows.
	s.grpc = grpc.NewServer(grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))), creds)
	NewServer(s.Cache).Register(s.grpc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, hs)
	reflection.Register(s.grpc)
	if cfg.MetricsAddr != "" {
		if err = s.startMetrics(cfg.MetricsAddr); err != nil {
			return nil, err
		}
	}
	go func() {
		defer close(s.served)
		if err := s.grpc.Serve(s.lis); err != nil {
			s.log.Error("node cache gRPC server stopped", "err", err)
		}
	}()
	s.log.Info("node cache serving", "addr", s.lis.Addr().String(), "central", cc.Central, "size", cc.MaxBytes,
		"peers", cfg.PeerBind != "", "tls", cfg.TLS != nil, "gossip_encrypted", len(cfg.GossipKey) > 0)
	return s, nil
}

// Addr is the gRPC address the service listens on.
func (s *Service) Addr() string { return s.lis.Addr().String() }

func (s *Service) startMetrics(addr string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	RegisterMetrics(reg, s.Cache)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.Cache.Stats()
		peers := 0
		if s.Peers != nil {
			peers = len(s.Peers.Members())
		}
		fmt.Fprintf(w, "ok entries=%d bytes=%d peers=%d\n", st.Entries, st.Bytes, peers)
	})
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s for metrics (--metrics-addr): %w", addr, err)
	}
	s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.metrics.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("metrics listener stopped", "err", err)
		}
	}()
	return nil
}

// Close leaves the peers first (so they stop sending reads here), then
// stops serving: downloads in progress get up to 5 s to finish.
func (s *Service) Close() error {
	s.closeParts()
	return nil
}

func (s *Service) closeParts() {
	if s.Peers != nil {
		_ = s.Peers.Close()
	}
	if s.grpc != nil {
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.grpc.Stop()
			<-stopped
		}
		<-s.served
	} else if s.lis != nil {
		_ = s.lis.Close()
	}
	if s.metrics != nil {
		_ = s.metrics.Close()
	}
	if s.Cache != nil {
		_ = s.Cache.Close()
	}
}
