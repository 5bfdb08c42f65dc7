package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/internal/snapfile"
)

const restoreLongHelp = `gridd restore seeds an empty data dir from a snapshot saved with
'gridctl cluster snapshot save', for disaster recovery: the node started on
that data dir leads a new single-node cluster holding the snapshot's state
(sessions, queued tasks, unacknowledged results, shared data), and the other
nodes join it with empty data dirs and --join, as when a cluster is built.

--id and --raft-addr must be what the restored node will run with (its --id,
and its --advertise-raft-addr or else --raft-addr): they become the new Raft
configuration. The file's size and SHA-256 are checked before anything is
written; a data dir that already holds Raft state is refused. See
docs/operations.md for the whole procedure.`

type restoreOptions struct {
	Snapshot string
	DataDir  string
	ID       string
	RaftAddr string
}

func newRestoreCmd(stderr io.Writer) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore --snapshot FILE --data-dir DIR --id ID [--raft-addr HOST:PORT]",
		Short: "Seed a new cluster's first node from a saved snapshot",
		Long:  restoreLongHelp,
		Example: `  gridd restore --snapshot gridd.snap --data-dir /var/lib/gridd --id n1 --raft-addr 10.0.0.1:7337
  gridd --id n1 --data-dir /var/lib/gridd --raft-addr 10.0.0.1:7337 ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return runRestore(cmd.OutOrStdout(), o, logger)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Snapshot, "snapshot", "", "snapshot file written by 'gridctl cluster snapshot save' (required)")
	f.StringVar(&o.DataDir, "data-dir", "", "empty data dir to seed (required)")
	f.StringVar(&o.ID, "id", "", "id the restored node will run with (required)")
	f.StringVar(&o.RaftAddr, "raft-addr", "127.0.0.1:7337", "Raft address the restored node will advertise")
	return cmd
}

func runRestore(out io.Writer, o restoreOptions, logger *slog.Logger) error {
	switch {
	case o.Snapshot == "":
		return errors.New("--snapshot is required: the file 'gridctl cluster snapshot save' wrote")
	case o.DataDir == "":
		return errors.New("--data-dir is required: the empty data dir the restored node will use")
	case o.ID == "":
		return errors.New("--id is required: the id the restored node will run with")
	case o.RaftAddr == "":
		return errors.New("--raft-addr must not be empty")
	}
	if err := validateID(o.ID); err != nil {
		return fmt.Errorf("--id %w", err)
	}
	f, err := os.Open(o.Snapshot)
	if err != nil {
		return fmt.Errorf("open the snapshot: %w", err)
	}
	defer f.Close()
	meta, data, err := snapfile.Read(f)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Snapshot, err)
	}
	hash, err := cluster.Restore(cluster.RestoreConfig{
		ID: o.ID, DataDir: o.DataDir, RaftAddr: o.RaftAddr, Index: meta.Index, Term: meta.Term, Logger: logger,
	}, data)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "restored snapshot index %d term %d (taken by %s) into %s as node %s; state hash %s\n"+
		"start it with --id %s --data-dir %s and no --join, then join the other nodes with empty data dirs\n",
		meta.Index, meta.Term, meta.NodeID, o.DataDir, o.ID, hash, o.ID, o.DataDir)
	return err
}
