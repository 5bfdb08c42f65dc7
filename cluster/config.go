package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// Config is one node's Raft settings. Zero values mean production defaults.
type Config struct {
	// ID names the node in the Raft configuration; stable across restarts.
	ID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// RaftAddr is the bind address of the Raft TCP transport, for example
	// 127.0.0.1:7337, or 127.0.0.1:0 for a free port.
	RaftAddr string
	// AdvertiseRaftAddr is what peers dial; empty means the listener's
	// address (which must then not be a wildcard address).
	AdvertiseRaftAddr string
	// GRPCAddr is this node's advertised gRPC address. The leader records it
	// in the FSM member table so that followers can forward to it.
	GRPCAddr string
	// Bootstrap makes a node without any Raft state start a single-node
	// cluster. A node that has state ignores it and rejoins with what it has.
	Bootstrap bool

	// Zero: 1s, 1s, 500ms.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// Zero: raft's defaults (8192 entries, 120s, 10240 entries).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// ApplyTimeout bounds how long Propose, Barrier and membership changes
	// wait when their context has no deadline. Zero: 10s.
	ApplyTimeout time.Duration

	// TLSServer and TLSClient, both set or both nil, encrypt the Raft
	// transport: TLSServer wraps accepted connections (it should require a
	// client certificate, so that only members speak Raft) and
	// TLSClient(addr) gives the configuration to dial the peer at addr
	// with. tlsconf.Source provides both. Nil: plaintext TCP.
	TLSServer *tls.Config
	TLSClient func(addr string) *tls.Config

	// Logger receives the node's logs; nil means slog.Default().
	Logger *slog.Logger
	// RaftLogLevel filters raft's own logs, which are chatty at Info.
	// Nil means slog.LevelWarn.
	RaftLogLevel slog.Leveler
	// Observer, if set, hears of applies, snapshots and leadership changes
	// for metrics. Its methods must return quickly: some run on Raft's
	// goroutines.
	Observer Observer
}

const (
	defaultHeartbeatTimeout   = time.Second
	defaultElectionTimeout    = time.Second
	defaultLeaderLeaseTimeout = 500 * time.Millisecond
	defaultApplyTimeout       = 10 * time.Second
	// logCacheSize is how many recent log entries stay decoded in memory.
	logCacheSize = 1024
	// lockTimeout is how long Open waits for the raft.db file lock before
	// concluding that another process uses the data dir.
	lockTimeout = time.Second
	// retainSnapshots is how many snapshots the file store keeps; the older
	// one is a fallback for operators, never used silently (see restoreLatest).
	retainSnapshots = 2
	// notifyBuffer absorbs raft's leadership notifications, which raft sends
	// blocking, while the watcher goroutine is busy.
	notifyBuffer = 16
	// transportPool and transportTimeout are the TCP transport's connection
	// pool size per peer and its I/O deadline.
	transportPool    = 3
	transportTimeout = 10 * time.Second
)

func (c Config) withDefaults() Config {
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = defaultHeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = defaultElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = defaultLeaderLeaseTimeout
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = defaultApplyTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftLogLevel == nil {
		c.RaftLogLevel = slog.LevelWarn
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.ID == "":
		return errors.New("cluster: config: ID is empty")
	case c.DataDir == "":
		return errors.New("cluster: config: DataDir is empty")
	case c.RaftAddr == "":
		return errors.New("cluster: config: RaftAddr is empty")
	case c.ApplyTimeout < 0:
		return errors.New("cluster: config: ApplyTimeout is negative")
	case (c.TLSServer == nil) != (c.TLSClient == nil):
		return errors.New("cluster: config: TLSServer and TLSClient go together: Raft peers both accept and dial")
	}
	return nil
}

// raftConfig translates c into raft's configuration; raft validates it.
func (c Config) raftConfig(notify chan bool, logger *hclogAdapter) (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	if c.SnapshotThreshold != 0 {
		rc.SnapshotThreshold = c.SnapshotThreshold
	}
	if c.SnapshotInterval != 0 {
		rc.SnapshotInterval = c.SnapshotInterval
	}
	if c.TrailingLogs != 0 {
		rc.TrailingLogs = c.TrailingLogs
	}
	rc.NotifyCh = notify
	rc.Logger = logger
	// Open restores the newest snapshot itself, so that a snapshot that
	// fails to restore stops the node instead of raft silently falling back
	// to an older one whose following log entries may be gone.
	rc.NoSnapshotRestoreOnStart = true
	// BatchApplyCh stays false. Group commit does not need it: the leader
	// loop drains every Apply blocked on the unbuffered channel (up to
	// MaxAppendEntries) into one disk write. With it, Apply returns before
	// the leader loop took the entry, so Apply's timeout no longer means
	// "never submitted", and we rely on that to tell ErrEnqueueTimeout (safe
	// to report as not committed) from an unknown outcome.
	rc.BatchApplyCh = false
	// A leader that commits its own removal steps down instead of shutting
	// Raft down. Shut down by itself, Raft makes a later Shutdown return at
	// once instead of waiting for its goroutines, and Close would then close
	// raft.db under a goroutine still writing to it ("failed to save
	// current term: database not open"). Removing the leader through the
	// API hands leadership over first anyway.
	rc.ShutdownOnRemove = false
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: config: %w", err)
	}
	return rc, nil
}
