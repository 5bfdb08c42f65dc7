package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gridd/gridd/tlsconf"
)

// tlsWatchInterval is how often a node looks for renewed certificate
// files: renewals (cert-manager, a Kubernetes secret) come without a
// signal, and a minute is well inside any certificate's renewal margin.
const tlsWatchInterval = 30 * time.Second

// validateTLS checks the TLS settings' combinations; the files themselves
// are read by loadTLS.
func validateTLS(o *options, bad func(name, format string, args ...any) error) error {
	auth, err := tlsconf.ParseClientAuth(o.TLSClientAuth)
	if err != nil {
		return bad("tls-client-auth", "%q is not one of none, request, require", o.TLSClientAuth)
	}
	switch {
	case o.TLSCert != "" && o.TLSKey == "":
		return bad("tls-cert", "needs --tls-key, the certificate's private key")
	case o.TLSKey != "" && o.TLSCert == "":
		return bad("tls-key", "needs --tls-cert, the certificate it belongs to")
	case o.TLSCert == "" && o.TLSCA != "":
		return bad("tls-ca", "TLS is off without --tls-cert and --tls-key")
	case o.TLSCert == "" && auth != tlsconf.ClientAuthNone:
		return bad("tls-client-auth", "TLS is off without --tls-cert and --tls-key")
	case auth != tlsconf.ClientAuthNone && o.TLSCA == "":
		return bad("tls-client-auth", "%s needs --tls-ca to verify client certificates against", auth)
	}
	return nil
}

// loadTLS reads the node's certificate, key and CA; nil without TLS.
func loadTLS(o *options) (*tlsconf.Source, error) {
	if o.TLSCert == "" {
		return nil, nil
	}
	auth, err := tlsconf.ParseClientAuth(o.TLSClientAuth)
	if err != nil {
		return nil, err // validate checked it
	}
	src, err := tlsconf.Load(tlsconf.Files{Cert: o.TLSCert, Key: o.TLSKey, CA: o.TLSCA}, auth)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key/--tls-ca: %w", err)
	}
	return src, nil
}

// reloadTLS reloads the node's TLS files on SIGHUP and when they change,
// until the returned stop is called.
func reloadTLS(src *tlsconf.Source, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		src.Watch(ctx, tlsWatchInterval, log)
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := src.Reload(); err != nil {
					log.Error("SIGHUP: TLS files do not load; keeping the previous certificate", "err", err)
					continue
				}
				log.Info("SIGHUP: TLS certificate reloaded")
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}
