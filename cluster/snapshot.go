package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/gridd/gridd/fsm"
	"github.com/hashicorp/raft"
)

// SnapshotMeta describes a snapshot opened by OpenSnapshot.
type SnapshotMeta struct {
	Index, Term        uint64
	Configuration      []MemberStatus // ID, RaftAddr and Suffrage only
	ConfigurationIndex uint64
	Size               int64
}

// OpenSnapshot has raft take a fresh snapshot (or reuses the newest when no
// entry was applied since) and opens it. The caller closes the reader.
// Leader only, so that the copy holds everything acknowledged so far.
func (n *Node) OpenSnapshot(ctx context.Context) (SnapshotMeta, io.ReadCloser, error) {
	leave, err := n.enter()
	if err != nil {
		return SnapshotMeta{}, nil, err
	}
	defer leave()
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	fut := n.raft.Snapshot()
	var meta *raft.SnapshotMeta
	var rc io.ReadCloser
	switch err := n.await(ctx, fut); {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		list, lerr := n.snaps.List()
		if lerr != nil || len(list) == 0 {
			return SnapshotMeta{}, nil, fmt.Errorf("cluster: snapshot: nothing new to snapshot and no snapshot to reuse: %v", lerr)
		}
		meta, rc, err = n.snaps.Open(list[0].ID)
		if err != nil {
			return SnapshotMeta{}, nil, fmt.Errorf("cluster: open snapshot %s: %w", list[0].ID, err)
		}
	case err != nil:
		if errors.Is(err, raft.ErrRaftShutdown) {
			return SnapshotMeta{}, nil, ErrClosed
		}
		return SnapshotMeta{}, nil, fmt.Errorf("cluster: take snapshot: %w", err)
	default:
		meta, rc, err = fut.Open()
		if err != nil {
			return SnapshotMeta{}, nil, fmt.Errorf("cluster: open the new snapshot: %w", err)
		}
	}
	out := SnapshotMeta{Index: meta.Index, Term: meta.Term, ConfigurationIndex: meta.ConfigurationIndex, Size: meta.Size}
	for _, s := range meta.Configuration.Servers {
		out.Configuration = append(out.Configuration, MemberStatus{
			ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: s.Suffrage.String(),
		})
	}
	return out, rc, nil
}

// RestoreConfig says where and as whom Restore seeds a new cluster.
type RestoreConfig struct {
	ID       string
	DataDir  string
	RaftAddr string // the address the node will advertise for Raft
	// Index and Term of the snapshot: the restored node continues the log
	// after them.
	Index, Term uint64
	Logger      *slog.Logger
}

// Restore seeds an empty data dir from a snapshot opened by OpenSnapshot, as
// the only voter of a new configuration: started with this data dir the
// node leads alone, with the snapshot's state, and the other nodes join it
// with empty data dirs. It returns the restored state's hash (fsm.Hash), to
// compare with the source's. It refuses a data dir that holds Raft state.
func Restore(cfg RestoreConfig, data io.Reader) (string, error) {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" {
		return "", errors.New("cluster: restore needs the node's id, data dir and raft address")
	}
	if cfg.Index == 0 {
		return "", errors.New("cluster: restore: the snapshot's index is 0")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, name := range []string{raftDBFile, "snapshots"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, name)); err == nil {
			return "", fmt.Errorf("cluster: restore: %s already holds Raft state (%s); restore into an empty data dir", cfg.DataDir, name)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return "", fmt.Errorf("cluster: create data dir: %w", err)
	}
	hash, err := restoreInto(cfg, data)
	if err != nil {
		// Neither existed before: removing them lets the operator retry
		// with a good file instead of being refused a non-empty data dir.
		_ = os.Remove(filepath.Join(cfg.DataDir, raftDBFile))
		_ = os.RemoveAll(filepath.Join(cfg.DataDir, "snapshots"))
	}
	return hash, err
}

func restoreInto(cfg RestoreConfig, data io.Reader) (string, error) {
	hlog := newHCLogAdapter(cfg.Logger, slog.LevelWarn)
	store, err := openLogStore(cfg.DataDir)
	if err != nil {
		return "", err
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, retainSnapshots, hlog.Named("snapshot"))
	if err != nil {
		return "", fmt.Errorf("cluster: snapshot store in %s: %w", cfg.DataDir, err)
	}
	addr := raft.ServerAddress(cfg.RaftAddr)
	_, trans := raft.NewInmemTransport(addr)
	defer trans.Close()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: addr}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, cfg.Index, cfg.Term, conf, cfg.Index, trans)
	if err != nil {
		return "", fmt.Errorf("cluster: restore: create snapshot: %w", err)
	}
	if _, err := io.Copy(sink, data); err != nil {
		_ = sink.Cancel()
		return "", fmt.Errorf("cluster: restore: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return "", fmt.Errorf("cluster: restore: write snapshot: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	// RecoverCluster restores the snapshot into a scratch FSM, which also
	// proves the file is a gridd snapshot, and writes a new one with conf.
	f := fsm.New(fsm.Options{})
	adapter := &fsmAdapter{f: f, restored: new(atomic.Uint64)}
	if err := raft.RecoverCluster(rc, adapter, store, store, snaps, trans, conf); err != nil {
		return "", fmt.Errorf("cluster: restore: %w", err)
	}
	if adapter.restored.Load() == 0 {
		return "", errors.New("cluster: restore: the snapshot was not restored")
	}
	// The next term must exceed the snapshot's: an election in a lower
	// term would write entries whose terms go backwards in the log.
	if err := store.SetUint64([]byte("CurrentTerm"), cfg.Term); err != nil {
		return "", fmt.Errorf("cluster: restore: record the term: %w", err)
	}
	return f.Hash(), nil
}
