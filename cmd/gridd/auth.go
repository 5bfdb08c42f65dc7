package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/gridd/gridd/auth"
	"github.com/gridd/gridd/server"
)

// configureAuth loads the API keys into cfg, or, with none, refuses to
// listen beyond loopback unless --insecure says the operator means it.
func configureAuth(o *options, cfg *server.Config, logger *slog.Logger) (*auth.Authenticator, error) {
	log := logger.With("component", "auth")
	cfg.JoinAPIKey = o.JoinAPIKey
	if o.APIKeysFile != "" {
		keys, err := auth.LoadFile(o.APIKeysFile)
		if err != nil {
			return nil, fmt.Errorf("--api-keys-file: %w", err)
		}
		a, err := auth.New(keys, auth.Options{})
		if err != nil {
			return nil, fmt.Errorf("--api-keys-file %s: %w", o.APIKeysFile, err)
		}
		cfg.Auth = a
		log.Info("API keys required", "keys", len(keys), "file", o.APIKeysFile)
		if len(o.Join) > 0 && o.JoinAPIKey == "" {
			log.Warn("--join is set but --join-api-key is not: the members will refuse this node's join unless it already is a member")
		}
		return a, nil
	}
	exposed := ""
	for _, a := range []struct{ name, addr string }{{"grpc-addr", o.GRPCAddr}, {"cache-addr", o.CacheAddr}} {
		if a.addr != "" && !loopback(a.addr) {
			exposed = fmt.Sprintf("--%s %s", a.name, a.addr)
			break
		}
	}
	if exposed != "" && !o.Insecure {
		return nil, fmt.Errorf("%s is not a loopback address and no --api-keys-file is set: anyone who reaches it could read and change every app's sessions; set --api-keys-file, or --insecure (GRIDD_INSECURE=true) to run open anyway", exposed)
	}
	if exposed != "" {
		log.Warn("running WITHOUT API keys on a non-loopback address (--insecure): anyone who reaches it can use every app", "listen", exposed)
	} else {
		log.Warn("running without API keys (no --api-keys-file): open to anyone on this machine, listening on loopback only")
	}
	return nil, nil
}

// loopback reports whether a listen address accepts local connections only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// reloadKeysOnHUP rereads the keys file on SIGHUP until ctx ends: a
// revoked key is refused from the next call on, with no restart. A file
// that does not load leaves the keys in force as they were.
func reloadKeysOnHUP(ctx context.Context, path string, a *auth.Authenticator, logger *slog.Logger) {
	log := logger.With("component", "auth")
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			keys, err := auth.LoadFile(path)
			if err == nil {
				err = a.Reload(keys)
			}
			if err != nil {
				log.Error("API keys not reloaded; the previous keys stay in force", "file", path, "err", err)
				continue
			}
			log.Info("API keys reloaded", "keys", len(keys), "file", path)
		}
	}
}
