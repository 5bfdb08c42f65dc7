package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/internal/snapfile"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/server"
)

// TestSnapshotSaveAndRestore is the disaster recovery procedure of
// docs/operations.md: save a snapshot from a cluster holding sessions and
// queued tasks, seed a fresh data dir from it, start a new cluster on it
// and join two empty nodes. The restored state hashes like the source, and
// every node of the new cluster holds the queued tasks.
func TestSnapshotSaveAndRestore(t *testing.T) {
	noLeaks(t)
	src := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, src.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var ids []string
	for s := 0; s < 3; s++ {
		sess, err := cl.CreateSession(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		tasks := make([]client.Task, 50)
		for i := range tasks {
			tasks[i] = client.Task{ID: fmt.Sprintf("t%d", i), Payload: []byte("p")}
		}
		if _, err := sess.Submit(ctx, tasks); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sess.ID())
		if err := sess.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	src.WaitConverged()
	leader := src.Nodes[src.WaitLeader()].Srv.Node().FSM()
	wantHash, wantApplied := leader.Hash(), leader.LastApplied()

	file := filepath.Join(t.TempDir(), "gridd.snap")
	// Through a follower: the call is relayed to the leader.
	follower := (src.Leader() + 1) % 3
	out := ok(t, "--addr", src.Nodes[follower].Cfg.GRPCAddr, "cluster", "snapshot", "save", file)
	if !strings.Contains(out, "saved snapshot index") {
		t.Fatalf("unexpected output %q", out)
	}

	// Nothing applied since: the second save reuses the same snapshot.
	again := filepath.Join(t.TempDir(), "again.snap")
	ok(t, "--addr", src.Nodes[follower].Cfg.GRPCAddr, "cluster", "snapshot", "save", again)
	if a, b := readMeta(t, file), readMeta(t, again); a.Index != b.Index || a.SHA256 != b.SHA256 {
		t.Fatalf("second save: index %d sha %s, first: index %d sha %s", b.Index, b.SHA256, a.Index, a.SHA256)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta, data, err := snapfile.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Index != wantApplied || len(meta.Configuration) != 3 {
		t.Fatalf("snapshot index %d with %d servers, want %d with 3", meta.Index, len(meta.Configuration), wantApplied)
	}
	src.KillAll() // the disaster

	dir := filepath.Join(t.TempDir(), "r1")
	raftAddr := closedAddr(t)
	// A damaged file is refused and leaves the data dir reusable.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	bm, bad, err := snapfile.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Restore(cluster.RestoreConfig{ID: "r1", DataDir: dir, RaftAddr: raftAddr,
		Index: bm.Index, Term: bm.Term}, bad); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("restore of a damaged snapshot: %v, want a sha256 error", err)
	}
	hash, err := cluster.Restore(cluster.RestoreConfig{ID: "r1", DataDir: dir, RaftAddr: raftAddr,
		Index: meta.Index, Term: meta.Term}, data)
	if err != nil {
		t.Fatal(err)
	}
	if hash != wantHash {
		t.Fatalf("restored state hash %s, source %s", hash, wantHash)
	}
	// A second restore into the same dir must not clobber it.
	if _, err := cluster.Restore(cluster.RestoreConfig{ID: "r1", DataDir: dir, RaftAddr: raftAddr,
		Index: meta.Index, Term: meta.Term}, strings.NewReader("x")); err == nil {
		t.Fatal("restore into a data dir with Raft state succeeded")
	}

	dst := testcluster.Start(t, 3, testcluster.Options{Configure: func(i int, cfg *server.Config) {
		if i == 0 {
			cfg.ID, cfg.DataDir, cfg.RaftAddr = "r1", dir, raftAddr
		}
	}})
	dst.WaitConverged()
	for i, n := range dst.Nodes {
		f := n.Srv.Node().FSM()
		for _, id := range ids {
			info, ok := f.Session(id)
			if !ok || info.Submitted != 50 || info.Pending != 50 {
				t.Fatalf("node %d: session %s found=%v submitted=%d pending=%d, want 50 and 50", i, id, ok, info.Submitted, info.Pending)
			}
		}
	}
	if st := dst.Nodes[dst.WaitLeader()].Srv.Node().Status(); st.Term < meta.Term {
		t.Fatalf("restored cluster in term %d, below the snapshot's %d", st.Term, meta.Term)
	}
}

func readMeta(t *testing.T, path string) snapfile.Meta {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, _, err := snapfile.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSnapshotSaveFailureLeavesNoFile: a save that cannot complete (no
// node answers) creates nothing at the path.
func TestSnapshotSaveFailureLeavesNoFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.snap")
	code, _, errOut := run(t, nil, "--addr", closedAddr(t), "--timeout", "2s", "cluster", "snapshot", "save", file)
	if code == 0 {
		t.Fatal("save against a closed address succeeded")
	}
	if !strings.Contains(errOut, "cannot reach") {
		t.Errorf("stderr %q does not say the cluster is unreachable", errOut)
	}
	if entries, _ := os.ReadDir(filepath.Dir(file)); len(entries) != 0 {
		t.Fatalf("a failed save left %v behind", entries)
	}
}
