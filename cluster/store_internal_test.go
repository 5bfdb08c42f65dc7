package cluster

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// A follower that installed a snapshot while it lagged keeps its old entries
// below a gap the snapshot covers. Seen in a container run: 1..5113, then
// 16933..20828 with a snapshot at 16932; the node must start, not call its
// log corrupt. A gap above the snapshot is corruption.
func TestCheckLogsToleratesGapCoveredBySnapshot(t *testing.T) {
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), raftDBFile)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var logs []*raft.Log
	for _, i := range []uint64{1, 2, 3, 4, 5, 10, 11, 12} {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogNoop})
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := checkLogs(store, 9); err != nil {
		t.Fatalf("gap 6..9 under a snapshot at 9: %v", err)
	}
	for _, snap := range []uint64{0, 7} {
		err := checkLogs(store, snap)
		if err == nil || !strings.Contains(err.Error(), "log entry") {
			t.Fatalf("snapshot at %d leaves entries missing above it; got %v", snap, err)
		}
	}
}
