package cluster_test

import (
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/cluster/clustertest"
	"github.com/gridd/gridd/fsm"
	"go.etcd.io/bbolt"
)

// TestCorruptDataDirFailsOpen damages copies of a stopped node's data dir
// in several ways; each must make Open fail with an error naming the
// damaged file, while an undamaged copy opens.
func TestCorruptDataDirFailsOpen(t *testing.T) {
	c := clustertest.Start(t, 1, clustertest.Options{})
	mustPropose(t, c, createSessionCmd("s1"))
	enqueue(t, c, "s1", taskIDs("t", 40)...)
	if err := c.Node(0).Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	enqueue(t, c, "s1", "after-snapshot")
	c.Close(0)
	src := c.DataDir(0)

	cases := []struct {
		name, want string // want: a fragment of the error
		damage     func(t *testing.T, dir string)
	}{
		{"intact", "", func(*testing.T, string) {}},
		{"truncated to half", "raft.db", func(t *testing.T, dir string) {
			truncate(t, filepath.Join(dir, "raft.db"), func(size int64) int64 { return size / 2 })
		}},
		{"truncated to three pages", "raft.db", func(t *testing.T, dir string) {
			truncate(t, filepath.Join(dir, "raft.db"), func(int64) int64 { return 3 * int64(os.Getpagesize()) })
		}},
		{"meta pages zeroed", "raft.db", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(dir, "raft.db"), 0, make([]byte, 2*os.Getpagesize()))
		}},
		{"log page header overwritten", "raft.db", corruptLogsRoot},
		{"snapshot state flipped", "snapshots", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(newestSnapshot(t, dir), "state.bin"), 3, []byte{0xAA, 0x55})
		}},
		{"snapshot meta garbled", "unreadable metadata", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(newestSnapshot(t, dir), "meta.json"), 0, []byte("{{{{"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, src, dir)
			tc.damage(t, dir)
			n, err := cluster.Open(cluster.Config{
				ID: "node0", DataDir: dir, RaftAddr: "127.0.0.1:0",
				Logger: slog.New(slog.DiscardHandler),
			}, fsm.New(fsm.Options{}))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open on an intact copy: %v", err)
				}
				if err := n.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
				return
			}
			if err == nil {
				_ = n.Close()
				t.Fatalf("Open succeeded on a damaged data dir")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open error %q does not name %s in %s", err, tc.want, dir)
			}
			t.Logf("Open failed as it should: %v", err)
		})
	}
}

// corruptLogsRoot overwrites the page header of raft-boltdb's "logs"
// bucket root, a page that is certainly reachable.
func corruptLogsRoot(t *testing.T, dir string) {
	path := filepath.Join(dir, "raft.db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	err = db.View(func(tx *bbolt.Tx) error {
		root = uint64(tx.Bucket([]byte("logs")).Root())
		return nil
	})
	pageSize := db.Info().PageSize
	_ = db.Close()
	if err != nil || root == 0 {
		t.Fatalf("logs bucket root page %d (inline?): %v", root, err)
	}
	// Page header: id (8 bytes), flags (2), count (2), overflow (4).
	hdr := binary.NativeEndian.AppendUint16(nil, 0xFFFF)
	overwrite(t, path, int64(root)*int64(pageSize)+8, hdr)
}

func newestSnapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var newest string
	for _, e := range entries {
		if e.IsDir() && e.Name() > newest {
			newest = e.Name()
		}
	}
	if newest == "" {
		t.Fatal("no snapshot")
	}
	return filepath.Join(dir, "snapshots", newest)
}

func truncate(t *testing.T, path string, size func(int64) int64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size(st.Size())); err != nil {
		t.Fatal(err)
	}
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}
