package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/rpc"
	"github.com/gridd/gridd/server"
	"github.com/spf13/pflag"
)

// Defaults of a single-node gridd started with no flags. They listen on
// loopback only: exposing a node is a decision the operator makes with a
// flag, never an accident of the defaults.
const (
	defaultDataDir         = "./gridd-data"
	defaultGRPCAddr        = server.DefaultGRPCAddr
	defaultRaftAddr        = server.DefaultRaftAddr
	defaultMetricsAddr     = server.DefaultMetricsAddr
	defaultMaxPayloadBytes = 4 << 20
	defaultMaxBatchTasks   = 10_000
	defaultClientExitGrace = 30 * time.Second
	defaultLogLevel        = "info"
	defaultLogFormat       = "text"
	defaultPreemption      = "drain"
	defaultSchedInterval   = time.Second
	// Limits (H13).
	defaultMaxPendingPerSession = 1_000_000
	envPrefix                   = "GRIDD_"
	configFlag                  = "config"
)

// options are gridd's settings as the user gave them, before they become a
// server.Config. Every field is one flag, one GRIDD_ variable and one YAML
// key, all with the same name.
type options struct {
	ID                string
	DataDir           string
	GRPCAddr          string
	AdvertiseGRPCAddr string
	RaftAddr          string
	AdvertiseRaftAddr string
	MetricsAddr       string
	Join              []string
	ConfigFile        string
	LogLevel          string
	LogFormat         string

	MaxPayloadBytes byteSize
	MaxBatchTasks   int

	ClientExitGrace time.Duration

	CacheAddr            string
	MaxSharedDataBytes   byteSize
	MaxSharedDataTTL     time.Duration
	DefaultSharedDataTTL time.Duration
	SharedDataKeepLevels int

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64

	Preemption        string
	SchedulerInterval time.Duration

	// Authentication (issue 7, H9).
	APIKeysFile string
	JoinAPIKey  string
	Insecure    bool
	// Observability (H11).
	Pprof           bool
	MetricsSessions int
	// Transport security (TLS): see tls.go.
	TLSCert       string
	TLSKey        string
	TLSCA         string
	TLSClientAuth string
	// Limits (H13).
	MaxPendingPerSession int
	MaxSessionsPerApp    int
	RateLimitPerKey      float64
	RateLimitBurst       int
}

// registerFlags defines every setting on fs. defaultID is the hostname:
// stable across restarts, which a Raft server id must be.
func registerFlags(fs *pflag.FlagSet, o *options, defaultID string) {
	fs.StringVar(&o.ID, "id", defaultID, "node id in the Raft configuration; must stay the same across restarts")
	fs.StringVar(&o.DataDir, "data-dir", defaultDataDir, "directory of the Raft log (raft.db) and snapshots")
	fs.StringVar(&o.GRPCAddr, "grpc-addr", defaultGRPCAddr, "listen address of the Queue and Cluster gRPC API")
	fs.StringVar(&o.AdvertiseGRPCAddr, "advertise-grpc-addr", "", "gRPC address other nodes and clients dial (default: the listen address)")
	fs.StringVar(&o.RaftAddr, "raft-addr", defaultRaftAddr, "listen address of the Raft transport")
	fs.StringVar(&o.AdvertiseRaftAddr, "advertise-raft-addr", "", "Raft address peers dial (default: the listen address)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", defaultMetricsAddr, `HTTP address of /metrics and /healthz; "" disables`)
	fs.StringSliceVar(&o.Join, "join", nil, "gRPC addresses of existing members to join (comma-separated or repeated); none: bootstrap a new cluster")
	fs.StringVar(&o.ConfigFile, configFlag, "", "YAML file whose keys are these flag names (data-dir: d1)")
	fs.StringVar(&o.LogLevel, "log-level", defaultLogLevel, "debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", defaultLogFormat, "text or json")

	o.MaxPayloadBytes = defaultMaxPayloadBytes
	fs.Var(&o.MaxPayloadBytes, "max-payload-bytes", "largest task payload accepted, in bytes (suffixes KiB, MiB, GiB allowed)")
	fs.IntVar(&o.MaxBatchTasks, "max-batch-tasks", defaultMaxBatchTasks, "most tasks accepted in one batch")
	fs.DurationVar(&o.ClientExitGrace, "client-exit-grace", defaultClientExitGrace,
		"how long a session with cleanup_on_client_exit waits for its client to reconnect before the leader closes it")

	fs.StringVar(&o.CacheAddr, "cache-addr", "", `a separate listen address for the Cache service (the central cache), besides --grpc-addr; "" serves it on --grpc-addr only`)
	o.MaxSharedDataBytes = rpc.DefaultMaxSharedDataBytes
	fs.Var(&o.MaxSharedDataBytes, "max-shared-data-bytes", "largest shared data level accepted, in bytes (suffixes KiB, MiB, GiB allowed)")
	fs.DurationVar(&o.MaxSharedDataTTL, "max-shared-data-ttl", rpc.DefaultMaxSharedDataTTL, "longest time to live of shared data; longer requests are capped")
	fs.DurationVar(&o.DefaultSharedDataTTL, "shared-data-ttl", rpc.DefaultSharedDataTTL, "time to live of shared data whose upload asks for none")
	fs.IntVar(&o.SharedDataKeepLevels, "shared-data-keep-levels", fsm.DefaultKeepLevels, "update levels of shared data kept per session, the latest included, so that workers on an older level can finish")

	// Zero leaves the choice to the server, which uses Raft's production
	// values unless it knows better; the help says what those are.
	fs.DurationVar(&o.HeartbeatTimeout, "heartbeat-timeout", 0, "Raft heartbeat timeout (default: the server's, Raft's is 1s)")
	fs.DurationVar(&o.ElectionTimeout, "election-timeout", 0, "Raft election timeout (default: the server's, Raft's is 1s)")
	fs.DurationVar(&o.LeaderLeaseTimeout, "leader-lease-timeout", 0, "Raft leader lease timeout, at most the heartbeat timeout (default: the server's, Raft's is 500ms)")
	fs.Uint64Var(&o.SnapshotThreshold, "snapshot-threshold", 0, "log entries between snapshots (default: the server's, Raft's is 8192)")
	fs.DurationVar(&o.SnapshotInterval, "snapshot-interval", 0, "how often to check whether a snapshot is due (default: the server's, Raft's is 2m)")
	fs.Uint64Var(&o.TrailingLogs, "trailing-logs", 0, "log entries kept after a snapshot for slow followers (default: the server's, Raft's is 10240)")

	fs.StringVar(&o.Preemption, "preemption", defaultPreemption, "how a worker leaves a preemptible session taken by a higher priority: drain (after its current batches) or immediate (its tasks run again elsewhere)")
	fs.DurationVar(&o.SchedulerInterval, "scheduler-interval", defaultSchedInterval, "how often worker placement runs besides on events; it is also the resolution of idle timeouts")

	// Authentication (issue 7, H9): see docs/SECURITY.md.
	fs.StringVar(&o.APIKeysFile, "api-keys-file", "", "YAML list of API keys ({name, hash, role, apps}); every call then needs a key in its api_key header; SIGHUP rereads it")
	fs.StringVar(&o.JoinAPIKey, "join-api-key", "", "API key (role admin or node) this node sends when it joins a cluster that requires keys")
	fs.BoolVar(&o.Insecure, "insecure", false, "allow listening on non-loopback addresses without --api-keys-file")
	// Observability (H11).
	fs.BoolVar(&o.Pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on --metrics-addr (exposes internals: keep the metrics listener private)")
	fs.IntVar(&o.MetricsSessions, "metrics-sessions", server.DefaultMetricsSessions,
		"open sessions with per-session queue depth series, the busiest first; 0 exports totals only (bounds Prometheus cardinality)")
	// Transport security (TLS): one certificate for the API, the cache
	// listener and node-to-node links; see tls.go.
	fs.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate of this node; with --tls-key turns on TLS for gRPC, Raft and node-to-node calls (reloaded on SIGHUP and when the files change)")
	fs.StringVar(&o.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.TLSCA, "tls-ca", "", "PEM CA bundle that peers' and clients' certificates are verified against (needed for a cluster of more than one node and for client auth)")
	// Limits (H13): enforced by the leader before it proposes.
	fs.IntVar(&o.MaxPendingPerSession, "max-pending-per-session", defaultMaxPendingPerSession,
		"most tasks without an outcome per session; a batch over it is refused with ResourceExhausted and the SDK resends it later (0: unlimited)")
	fs.IntVar(&o.MaxSessionsPerApp, "max-sessions-per-app", 0, "most open sessions per app; CreateSession beyond it gets ResourceExhausted (0: unlimited)")
	fs.Float64Var(&o.RateLimitPerKey, "rate-limit-per-key", 0, "calls per second (unary calls and stream opens) each API key may make on this node; beyond it ResourceExhausted (0: unlimited; needs --api-keys-file)")
	fs.IntVar(&o.RateLimitBurst, "rate-limit-burst", 0, "calls a key may make at once above --rate-limit-per-key (0: one second's worth)")
	fs.StringVar(&o.TLSClientAuth, "tls-client-auth", "", "client certificates on the API listeners: none (the default), request (verified if sent) or require (mTLS); Raft always requires one")
}

// envName is the environment variable that sets the flag name.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// byteSize is a positive-or-not byte count that also reads 4MiB or 512KiB,
// because payload limits are naturally written that way.
type byteSize int64

var byteSuffixes = []struct {
	suffix string
	mult   int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1_000_000_000}, {"MB", 1_000_000}, {"KB", 1000}, {"B", 1},
}

// errByteSize explains the accepted syntax once, for every source.
var errByteSize = errors.New("want a whole number of bytes, optionally with KiB, MiB or GiB (like 4MiB)")

func (b *byteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, bs := range byteSuffixes {
		if rest, ok := strings.CutSuffix(num, bs.suffix); ok {
			num, mult = strings.TrimSpace(rest), bs.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return errByteSize
	}
	if n > 0 && n > (1<<62)/mult || n < 0 && n < -(1<<62)/mult {
		return fmt.Errorf("%q is too large: %w", s, errByteSize)
	}
	*b = byteSize(n * mult)
	return nil
}

// String prefers the binary suffixes, so --help shows 4MiB.
func (b *byteSize) String() string {
	n := int64(*b)
	for _, bs := range byteSuffixes[:3] {
		if n != 0 && n%bs.mult == 0 {
			return strconv.FormatInt(n/bs.mult, 10) + bs.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Type() string { return "bytes" }
