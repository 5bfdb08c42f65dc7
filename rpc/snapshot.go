package rpc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
)

// snapshotChunkBytes keeps each message well under gRPC's limits while
// amortising per-message costs.
const snapshotChunkBytes = 1 << 20

// Snapshot streams a fresh snapshot of the leader's state: meta first,
// then the data, then its SHA-256. A follower relays the leader's stream.
func (c *clusterServer) Snapshot(req *griddpb.SnapshotRequest, stream griddpb.Cluster_SnapshotServer) error {
	ctx := stream.Context()
	if conn, err := c.s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return err
		}
		up, err := griddpb.NewClusterClient(conn).Snapshot(c.s.fwd.outgoing(ctx), req)
		if err != nil {
			return err
		}
		for {
			chunk, err := up.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := stream.Send(chunk); err != nil {
				return err
			}
		}
	}
	meta, rc, err := c.s.node.OpenSnapshot(ctx)
	if err != nil {
		return toStatus(err)
	}
	defer rc.Close()
	pm := &griddpb.SnapshotMeta{Index: meta.Index, Term: meta.Term, ConfigurationIndex: meta.ConfigurationIndex,
		Size: meta.Size, NodeId: c.s.node.ID(), CreatedUnixMs: time.Now().UnixMilli()}
	for _, m := range meta.Configuration {
		pm.Configuration = append(pm.Configuration, &griddpb.Member{Id: m.ID, RaftAddr: m.RaftAddr, Suffrage: strings.ToLower(m.Suffrage)})
	}
	if err := stream.Send(&griddpb.SnapshotChunk{Meta: pm}); err != nil {
		return err
	}
	h := sha256.New()
	var sent int64
	for {
		// A fresh buffer per chunk: gRPC may still hold the last message
		// after Send returns.
		buf := make([]byte, snapshotChunkBytes)
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			h.Write(buf[:n])
			sent += int64(n)
			if err := stream.Send(&griddpb.SnapshotChunk{Data: buf[:n]}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return toStatus(fmt.Errorf("read snapshot %d: %w", meta.Index, err))
		}
	}
	if sent != meta.Size {
		return toStatus(fmt.Errorf("snapshot %d: read %d bytes, its metadata says %d", meta.Index, sent, meta.Size))
	}
	c.s.log.Info("snapshot streamed", "index", meta.Index, "term", meta.Term, "bytes", sent)
	return stream.Send(&griddpb.SnapshotChunk{Sha256: hex.EncodeToString(h.Sum(nil))})
}
