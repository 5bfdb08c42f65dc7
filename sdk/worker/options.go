package worker

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/sdk/internal/conn"
)

// Defaults for Options left at zero.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultDrainTimeout      = 10 * time.Second
)

// Options configure Run. Only Addrs is required.
type Options struct {
	// Addrs are gRPC addresses of cluster nodes; the leader is discovered.
	Addrs []string
	// WorkerID names this worker; default hostname-pid-random. Two running
	// workers must not share one.
	WorkerID string
	// Node and Pod say where the worker runs; defaults from the GRIDD_NODE
	// and GRIDD_POD environment variables.
	Node, Pod string
	// Concurrency is how many tasks run at once; default GOMAXPROCS.
	Concurrency int
	// APIKey is sent as the api_key header.
	APIKey string
	// TLS enables transport security; nil means plaintext.
	TLS    *tls.Config
	Logger *slog.Logger
	// HeartbeatInterval is how often the worker reports its state; default 2 s.
	HeartbeatInterval time.Duration
	// DrainTimeout bounds how long Run lets running tasks finish after its
	// context ends; default 10 s. Tasks still running then have their
	// context cancelled and their results are dropped (the server runs them
	// again elsewhere).
	DrainTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections
	// (default 50 ms .. 2 s).
	MinBackoff, MaxBackoff time.Duration
	// DialOptions are added to the SDK's gRPC dial options.
	DialOptions []grpc.DialOption
	// LeaderWatch is how long a worker bound to a session may hear nothing
	// from its node before it asks the other nodes whether a new leader was
	// elected; if one names a leader of a later term, the worker drops its
	// streams (running tasks are cancelled, the new leader runs them again)
	// and registers with the new leader. It gets workers past a paused
	// leader (SIGSTOP, docker pause), whose connections stay up. Default
	// 2 s; < 0 turns the watch off.
	LeaderWatch time.Duration
	// NodeCacheAddr is the gRPC address of the node cache on this machine
	// (`gridd nodecache`, e.g. 127.0.0.1:3337), which tasks' shared data is
	// fetched through; TLS, APIKey and DialOptions apply to it too. Empty,
	// or when it fails, the central cache of the cluster at Addrs is asked.
	NodeCacheAddr string
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Addrs) == 0 {
		return o, status.Error(codes.InvalidArgument, "gridd worker: no server address given")
	}
	if o.WorkerID == "" {
		o.WorkerID = defaultWorkerID()
	}
	if o.Node == "" {
		o.Node = os.Getenv("GRIDD_NODE")
	}
	if o.Pod == "" {
		o.Pod = os.Getenv("GRIDD_POD")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = conn.DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = conn.DefaultMaxBackoff
	}
	return o, nil
}

func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
