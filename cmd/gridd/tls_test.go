package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/tlsconf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

func TestTLSSettingsRejected(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-created")
	cases := map[string][]string{
		"--tls-key":              {"--tls-cert", "c.pem"},
		"--tls-cert":             {"--tls-key", "k.pem"},
		"--tls-ca":               {"--tls-ca", "ca.pem"},
		"flag --tls-client-auth": {"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-auth", "require"},
		"sometimes":              {"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", "ca.pem", "--tls-client-auth", "sometimes"},
		"no-such-cert.pem":       {"--tls-cert", "no-such-cert.pem", "--tls-key", "k.pem"},
	}
	for want, args := range cases {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), append([]string{"--data-dir", dir}, args...), noEnv, &out, &errOut)
		msg := errOut.String()
		if code != 1 || !strings.Contains(msg, want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 1 and one line naming %s", args, code, msg, want)
		}
	}
}

// TestRunsWithTLSAndReloadsOnSIGHUP starts gridd with mTLS, checks who it
// serves, replaces its certificates with ones of a new CA and sends SIGHUP:
// new connections then need the new CA.
func TestRunsWithTLSAndReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := tlsconf.GenerateDev(certs, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	exit := make(chan int, 1)
	args := []string{"--id", "n1", "--data-dir", filepath.Join(dir, "data"), "--grpc-addr", "127.0.0.1:0",
		"--raft-addr", "127.0.0.1:0", "--metrics-addr", "", "--log-format", "json", "--log-level", "debug",
		"--tls-cert", filepath.Join(certs, tlsconf.DevServerCert), "--tls-key", filepath.Join(certs, tlsconf.DevServerKey),
		"--tls-ca", filepath.Join(certs, tlsconf.DevCACert), "--tls-client-auth", "require"}
	go func() { exit <- execute(ctx, args, noEnv, &out, &errOut) }()
	var addr string
	waitFor(t, "the node-started log line", func() bool {
		addr = startedAddr(errOut.String())
		return addr != ""
	})
	call := func(creds credentials.TransportCredentials) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		_, err = griddpb.NewClusterClient(cc).Status(cctx, &griddpb.ClusterStatusRequest{})
		return err
	}
	mtls := func() credentials.TransportCredentials {
		cfg, err := tlsconf.StaticClientConfig(filepath.Join(certs, tlsconf.DevCACert),
			filepath.Join(certs, tlsconf.DevClientCert), filepath.Join(certs, tlsconf.DevClientKey))
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewTLS(cfg)
	}
	if err := call(mtls()); err != nil {
		t.Fatalf("mTLS client: %v", err)
	}
	if err := call(insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client was served")
	}
	old := mtls()
	if err := tlsconf.GenerateDev(certs, nil); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload log line", func() bool { return strings.Contains(errOut.String(), "TLS certificate reloaded") })
	if err := call(mtls()); err != nil {
		t.Fatalf("client of the new CA after SIGHUP: %v", err)
	}
	if err := call(old); err == nil {
		t.Fatal("a client of the old CA is still served after the reload")
	}
	cancel()
	if code := <-exit; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

func TestNodecacheAndWorkerTLSFlagsRejected(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"nodecache", "--gossip-key", "not base64!"}, "--gossip-key"},
		{[]string{"nodecache", "--gossip-key", "c2hvcnQ="}, "--gossip-key"},
		{[]string{"nodecache", "--bind", "", "--gossip-key", "MDEyMzQ1Njc4OWFiY2RlZg=="}, "--gossip-key"},
		{[]string{"nodecache", "--tls-ca", "ca.pem"}, "--tls-ca"},
		{[]string{"nodecache", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-auth", "maybe"}, "--tls-client-auth"},
		{[]string{"nodecache", "--tls-cert", "no-such.pem", "--tls-key", "k.pem"}, "no-such.pem"},
		{[]string{"worker", "--exec", "cat", "--tls-key", "k.pem"}, "--tls-cert"},
		{[]string{"worker", "--exec", "cat", "--tls-ca", "no-such-ca.pem"}, "no-such-ca.pem"},
	} {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), tt.args, noEnv, &out, &errOut)
		msg := strings.TrimSpace(errOut.String())
		if code != 1 || !strings.Contains(msg, tt.want) || strings.Count(msg, "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want 1 and one line mentioning %q", tt.args, code, msg, tt.want)
		}
	}
}
