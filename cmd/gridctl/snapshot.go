package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gridd/gridd/internal/snapfile"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

func clusterSnapshotCmd(g *globals) *cobra.Command {
	return group("snapshot", "Save the replicated state for disaster recovery", clusterSnapshotSaveCmd(g))
}

func clusterSnapshotSaveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Have the leader take a fresh snapshot and save it to FILE",
		Long: `Have the leader take a fresh Raft snapshot of the replicated state (sessions,
tasks, unacknowledged results, shared data, members) and save it to FILE, with
its index, term, Raft configuration and SHA-256. FILE appears only once the
whole snapshot arrived and checked out. ` + "`gridd restore`" + ` seeds a new cluster
from it: see docs/operations.md.`,
		Example: "  gridctl --addr 10.0.0.1:1337 cluster snapshot save gridd-$(date +%F).snap",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var meta snapfile.Meta
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				meta, err = saveSnapshot(ctx, griddpb.NewClusterClient(cc), args[0])
				return err
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "saved snapshot index %d term %d (%d bytes, from %s) to %s\n",
				meta.Index, meta.Term, meta.Size, meta.NodeID, args[0])
			return err
		},
	}
}

// saveSnapshot receives the stream into a scratch file next to path, checks
// its size and digest, then writes path (header and data) and renames it
// into place, so that path never holds a partial snapshot.
func saveSnapshot(ctx context.Context, cc griddpb.ClusterClient, path string) (snapfile.Meta, error) {
	stream, err := cc.Snapshot(ctx, &griddpb.SnapshotRequest{})
	if err != nil {
		return snapfile.Meta{}, err
	}
	first, err := stream.Recv()
	if err != nil {
		return snapfile.Meta{}, err
	}
	pm := first.GetMeta()
	if pm == nil {
		return snapfile.Meta{}, errors.New("the server sent snapshot data before its metadata")
	}
	meta := snapfile.Meta{Index: pm.Index, Term: pm.Term, ConfigurationIndex: pm.ConfigurationIndex,
		Size: pm.Size, NodeID: pm.NodeId, CreatedUnixMs: pm.CreatedUnixMs}
	for _, m := range pm.Configuration {
		meta.Configuration = append(meta.Configuration, snapfile.Server{ID: m.Id, RaftAddr: m.RaftAddr, Suffrage: m.Suffrage})
	}
	dir := filepath.Dir(path)
	data, err := os.CreateTemp(dir, ".gridd-snapshot-*.part")
	if err != nil {
		return meta, fmt.Errorf("create a scratch file next to %s: %w", path, err)
	}
	defer os.Remove(data.Name())
	defer data.Close()
	h := sha256.New()
	var got int64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return meta, errors.New("the snapshot stream ended without its checksum: incomplete, nothing saved")
		}
		if err != nil {
			return meta, err
		}
		if sum := chunk.GetSha256(); sum != "" {
			meta.SHA256 = sum
			break
		}
		h.Write(chunk.Data)
		got += int64(len(chunk.Data))
		if _, err := data.Write(chunk.Data); err != nil {
			return meta, fmt.Errorf("write %s: %w", data.Name(), err)
		}
	}
	if got != meta.Size {
		return meta, fmt.Errorf("received %d bytes of snapshot, the leader announced %d: nothing saved", got, meta.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != meta.SHA256 {
		return meta, fmt.Errorf("received snapshot has sha256 %s, the leader sent %s: nothing saved", sum, meta.SHA256)
	}
	if _, err := data.Seek(0, io.SeekStart); err != nil {
		return meta, err
	}
	out, err := os.CreateTemp(dir, ".gridd-snapshot-*.tmp")
	if err != nil {
		return meta, fmt.Errorf("create a file next to %s: %w", path, err)
	}
	defer os.Remove(out.Name()) // fails harmlessly once renamed
	werr := snapfile.WriteHeader(out, meta)
	if werr == nil {
		_, werr = io.Copy(out, data)
	}
	if werr == nil {
		werr = out.Sync()
	}
	if cerr := out.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return meta, fmt.Errorf("write %s: %w", path, werr)
	}
	if err := os.Rename(out.Name(), path); err != nil {
		return meta, fmt.Errorf("save %s: %w", path, err)
	}
	return meta, nil
}
