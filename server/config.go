package server

import (
	"log/slog"
	"time"

	"github.com/gridd/gridd/auth"
	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/tlsconf"
	"google.golang.org/grpc"
)

// Config is everything a gridd node needs. cmd/gridd fills it from flags,
// GRIDD_* environment variables and a YAML file; tests fill it directly.
type Config struct {
	// ID names the node in the Raft configuration; stable across restarts.
	ID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// GRPCAddr is the listen address of the Queue and Cluster services.
	// Port 0 picks a free port (see Server.GRPCAddr).
	GRPCAddr string
	// AdvertiseGRPCAddr is the address other nodes and clients use to reach
	// this node; empty means the listener's address.
	AdvertiseGRPCAddr string
	// RaftAddr is the listen address of the Raft TCP transport.
	RaftAddr string
	// AdvertiseRaftAddr is what peers dial; empty means the listener's.
	AdvertiseRaftAddr string
	// MetricsAddr serves /metrics and /healthz over HTTP; empty disables.
	MetricsAddr string
	// Pprof also serves net/http/pprof under /debug/pprof/ on MetricsAddr.
	Pprof bool
	// MetricsSessions bounds the per-session queue depth series to the
	// busiest open sessions; zero means DefaultMetricsSessions, negative
	// turns them off (totals are always exported).
	MetricsSessions int
	// Join lists gRPC addresses of existing members. A node with no state
	// and no Join bootstraps a new cluster; a node with state rejoins with
	// what it has.
	Join []string

	// Raft timing; zero values mean production defaults.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64

	// Limits on client input.
	MaxPayloadBytes int // per task payload; default 4 MiB
	MaxBatchTasks   int // per batch; default 10,000
	// Limits (H13), enforced by the leader; zero means unlimited.
	// MaxPendingPerSession bounds a session's tasks without an outcome: a
	// batch over it is refused with ResourceExhausted (the SDK waits and
	// resends). MaxSessionsPerApp bounds an app's open sessions.
	MaxPendingPerSession int
	MaxSessionsPerApp    int
	// RateLimitPerKey bounds the calls per second of each API key on this
	// node (unary calls and stream opens; 0: unlimited; needs Auth), with
	// bursts of RateLimitBurst (0: one second's worth). Beyond it a call
	// gets ResourceExhausted.
	RateLimitPerKey float64
	RateLimitBurst  int

	// Central cache (the Cache service): the largest payload of one level
	// (default 256 MiB), the longest TTL (default 7 days), the TTL of an
	// upload that asks for none (default 24 h), and how many levels a
	// session keeps (default 2).
	MaxSharedDataBytes   int64
	MaxSharedDataTTL     time.Duration
	DefaultSharedDataTTL time.Duration
	SharedDataKeepLevels int
	// CacheAddr, if set, serves the Cache service on a listener of its own
	// as well as on GRPCAddr (the seed's separate cache port); empty means
	// GRPCAddr only.
	CacheAddr string

	// ClientExitGrace is how long a session with cleanup_on_client_exit
	// waits for its client to come back before the leader closes it;
	// default 30s.
	ClientExitGrace time.Duration

	// Scheduler: how a worker leaves a preemptible session taken by a
	// higher priority (default drain), and how often placement runs
	// besides on events (default 1s).
	Preemption        dispatch.Preemption
	SchedulerInterval time.Duration

	Logger *slog.Logger

	// Auth checks the api_key of every call (auth package); nil runs the
	// node open, for development. JoinAPIKey is the key this node sends
	// when it joins a cluster that requires keys (role admin or node).
	Auth       *auth.Authenticator
	JoinAPIKey string
	// TLS, if set, secures every listener (gRPC, the cache listener, Raft)
	// and this node's calls to its peers (joining, forwarding, Raft), all
	// verified against its CA. The API listeners treat client certificates
	// as the Source's ClientAuth says; Raft always requires one. Nil:
	// plaintext, for loopback development and tests.
	TLS *tlsconf.Source

	// GRPCServerOptions are appended to the node's own gRPC server options.
	// Not a setting of cmd/gridd: tests use it to add interceptors, for
	// example one that freezes the node's answers to simulate a paused
	// process (internal/testcluster's Freeze).
	GRPCServerOptions []grpc.ServerOption
}

// Defaults of a node started with no configuration: one node on loopback.
const (
	DefaultDataDir     = "gridd-data"
	DefaultGRPCAddr    = "127.0.0.1:1337"
	DefaultRaftAddr    = "127.0.0.1:7337"
	DefaultMetricsAddr = "127.0.0.1:8080"
)

func (c Config) withDefaults() Config {
	if c.ID == "" {
		c.ID = "node1"
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.RaftAddr == "" {
		c.RaftAddr = DefaultRaftAddr
	}
	if c.MetricsSessions == 0 {
		c.MetricsSessions = DefaultMetricsSessions
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
