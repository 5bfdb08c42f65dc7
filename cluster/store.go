package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// raftDBFile is the log and stable store inside the data dir.
const raftDBFile = "raft.db"

// openLogStore opens <dir>/raft.db after checking it thoroughly: bbolt has
// no checksums on data pages, and a truncated file would crash the process
// with SIGBUS on first access, so a damaged file must be caught here and
// named, never served as an empty or partial log.
func openLogStore(dir string) (*raftboltdb.BoltStore, error) {
	path := filepath.Join(dir, raftDBFile)
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: lockTimeout},
	})
	if err != nil {
		return nil, boltOpenError(path, err)
	}
	return store, nil
}

func boltOpenError(path string, err error) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("cluster: data dir in use: %s is locked by another process (or another node in this one): %w", path, err)
	}
	return fmt.Errorf("cluster: open %s: %w", path, err)
}

// checkBoltFile validates an existing bbolt file before bbolt maps it: the
// size against the newest valid meta page's high water mark, then bbolt's
// own consistency check on a read-only handle.
func checkBoltFile(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && st.Size() == 0) {
		return nil // a new store
	}
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	corrupt := func(err error) error { return fmt.Errorf("cluster: %s is corrupt: %w", path, err) }
	if err := checkBoltSize(path, st.Size()); err != nil {
		return corrupt(err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return boltOpenError(path, err)
	}
	if err != nil {
		return corrupt(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, e)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return corrupt(err)
	}
	return nil
}

// bbolt's on-disk meta page (format version 2), which has been stable since
// boltdb: a 16-byte page header, then magic, version, page size, flags,
// root bucket (pgid, sequence), freelist pgid, high water mark pgid, txid,
// and an FNV-64a checksum of the preceding fields.
const (
	boltPageHeader = 16
	boltMetaSum    = 56 // bytes covered by the checksum
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
)

type boltMeta struct {
	pageSize uint32
	hwm      uint64
	txid     uint64
}

func readBoltMeta(f *os.File, off int64) (boltMeta, bool) {
	var b [boltPageHeader + boltMetaSum + 8]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	m := b[boltPageHeader:]
	le := binary.NativeEndian
	h := fnv.New64a()
	_, _ = h.Write(m[:boltMetaSum])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[boltMetaSum:]) != h.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

func checkBoltSize(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m0, ok0 := readBoltMeta(f, 0)
	pageSize := int64(os.Getpagesize())
	if ok0 {
		pageSize = int64(m0.pageSize)
	}
	m1, ok1 := readBoltMeta(f, pageSize)
	var m boltMeta
	switch {
	case ok0 && ok1:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case ok0:
		m = m0
	case ok1:
		m = m1
	default:
		return errors.New("no valid bbolt meta page")
	}
	if need := int64(m.hwm) * int64(m.pageSize); size < need {
		return fmt.Errorf("file is truncated: %d bytes, its meta page needs %d", size, need)
	}
	return nil
}

// checkLogs decodes every entry in the log, so that a damaged value is
// found now rather than when raft replays or ships it.
// checkLogs reads every entry of the log. Entries at or below the newest
// snapshot's index may be missing: a follower that installed a snapshot
// while it lagged keeps its old entries below the gap that the snapshot
// covers (raft compacts only up to the trailing-logs bound), so
// 1..5113 then 16933..20828 with a snapshot at 16932 is a sound log.
// Every entry after the snapshot must be there.
func checkLogs(store *raftboltdb.BoltStore, snapshotIndex uint64) error {
	first, err := store.FirstIndex()
	if err != nil {
		return err
	}
	last, err := store.LastIndex()
	if err != nil {
		return err
	}
	if first == 0 && last == 0 {
		return nil
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := store.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) && i <= snapshotIndex {
				continue // covered by the snapshot
			}
			return fmt.Errorf("log entry %d of %d..%d (snapshot at %d): %w", i, first, last, snapshotIndex, err)
		}
		if l.Index != i {
			return fmt.Errorf("log entry %d holds index %d", i, l.Index)
		}
	}
	return nil
}

// restoreLatest restores the newest snapshot into the FSM, and fails if it
// cannot: raft would otherwise skip it and fall back to an older snapshot
// whose following entries may have been compacted away. It returns the
// restored snapshot's index (0: none).
func restoreLatest(dir string, snaps *raft.FileSnapshotStore, a *fsmAdapter) (uint64, error) {
	list, err := snaps.List()
	if err != nil {
		return 0, fmt.Errorf("cluster: list snapshots in %s: %w", dir, err)
	}
	if err := checkUnlistedSnapshots(filepath.Join(dir, "snapshots"), list); err != nil {
		return 0, err
	}
	if len(list) == 0 {
		return 0, nil
	}
	path := filepath.Join(dir, "snapshots", list[0].ID)
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return 0, fmt.Errorf("cluster: snapshot %s is unreadable: %w", path, err)
	}
	if err := a.Restore(rc); err != nil {
		return 0, fmt.Errorf("cluster: snapshot %s failed to restore: %w", path, err)
	}
	return list[0].Index, nil
}

// checkUnlistedSnapshots fails when a snapshot directory newer than the
// newest listed one exists: the file store skips directories whose
// meta.json is unreadable, which would silently lose that snapshot.
func checkUnlistedSnapshots(snapDir string, list []*raft.SnapshotMeta) error {
	entries, err := os.ReadDir(snapDir)
	if err != nil {
		return fmt.Errorf("cluster: read %s: %w", snapDir, err)
	}
	var newestTerm, newestIndex uint64
	if len(list) > 0 {
		newestTerm, newestIndex = list[0].Term, list[0].Index
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		term, index, ok := parseSnapshotID(e.Name())
		if !ok {
			continue
		}
		if term > newestTerm || (term == newestTerm && index > newestIndex) {
			return fmt.Errorf("cluster: snapshot %s has unreadable metadata", filepath.Join(snapDir, e.Name()))
		}
	}
	return nil
}

// parseSnapshotID reads raft's "<term>-<index>-<unix ms>" directory names.
func parseSnapshotID(id string) (term, index uint64, ok bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 3 {
		return 0, 0, false
	}
	term, err1 := strconv.ParseUint(parts[0], 10, 64)
	index, err2 := strconv.ParseUint(parts[1], 10, 64)
	return term, index, err1 == nil && err2 == nil
}
