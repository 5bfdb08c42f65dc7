package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/gridd/gridd/server"
)

// runNode starts a node and keeps it running until ctx is cancelled (a
// signal), then closes it gracefully; or until it stops by itself, which
// is a failure.
func runNode(ctx context.Context, cfg server.Config, logger *slog.Logger) error {
	log := logger.With("component", "gridd")
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("node %s did not start: %w", cfg.ID, err)
	}
	if cfg.TLS != nil {
		stop := reloadTLS(cfg.TLS, log)
		defer stop()
	}
	// The server announces itself at Info; this line adds the bound gRPC
	// address, which differs from the setting when its port is 0.
	log.Debug("node started", "id", cfg.ID, "grpc_addr", srv.GRPCAddr(),
		"raft_addr", cfg.RaftAddr, "data_dir", cfg.DataDir, "join", cfg.Join)
	select {
	case <-ctx.Done():
		log.Info("signal received: stopping gracefully")
		if err := srv.Close(); err != nil {
			return fmt.Errorf("node %s did not stop cleanly: %w", cfg.ID, err)
		}
		log.Info("stopped")
		return nil
	case <-srv.Done():
		err := srv.Err()
		// Close releases what the failed server still holds (listeners,
		// the data dir's lock); its own error adds nothing to the cause.
		_ = srv.Close()
		if err == nil {
			err = errors.New("it stopped without saying why")
		}
		return fmt.Errorf("node %s stopped: %w", cfg.ID, err)
	}
}
