package server_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
	"github.com/gridd/gridd/tlsconf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// tlsCluster starts n nodes whose every link (API, forwarding, joining,
// Raft) is TLS with client certificates required, all from one dev CA.
func tlsCluster(t *testing.T, n int) (*testcluster.Cluster, string) {
	t.Helper()
	dir := t.TempDir()
	if err := tlsconf.GenerateDev(dir, nil); err != nil {
		t.Fatal(err)
	}
	src, err := tlsconf.Load(tlsconf.Files{
		Cert: filepath.Join(dir, tlsconf.DevServerCert), Key: filepath.Join(dir, tlsconf.DevServerKey),
		CA: filepath.Join(dir, tlsconf.DevCACert),
	}, tlsconf.ClientAuthRequire)
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, n, testcluster.Options{Configure: func(_ int, cfg *server.Config) { cfg.TLS = src }})
	return c, dir
}

func clientTLS(t *testing.T, dir string, withCert bool) *tls.Config {
	t.Helper()
	cert, key := "", ""
	if withCert {
		cert, key = filepath.Join(dir, tlsconf.DevClientCert), filepath.Join(dir, tlsconf.DevClientKey)
	}
	cfg, err := tlsconf.StaticClientConfig(filepath.Join(dir, tlsconf.DevCACert), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// statusCall makes one Cluster.Status call with creds and returns its error.
func statusCall(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = griddpb.NewClusterClient(cc).Status(ctx, &griddpb.ClusterStatusRequest{})
	return err
}

// A TLS cluster elects, replicates and serves: a client and a worker with
// certificates from the CA run tasks through a follower, which forwards to
// the leader over TLS; Raft replicates over TLS.
func TestTLSClusterServes(t *testing.T) {
	c, dir := tlsCluster(t, 3)
	c.WaitLeader()
	f := (c.Leader() + 1) % 3
	addrs := []string{c.Nodes[f].Srv.GRPCAddr()}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wctx, stopWorker := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		_ = worker.Run(wctx, worker.Options{Addrs: addrs, WorkerID: "w-tls", Concurrency: 2,
			DrainTimeout: time.Second, TLS: clientTLS(t, dir, true)}, echoHandler)
	}()
	defer func() { stopWorker(); <-wdone }()

	cl, err := client.Dial(ctx, addrs, client.WithTLS(clientTLS(t, dir, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	tasks := make([]client.Task, n)
	for i := range tasks {
		tasks[i] = client.Task{ID: taskID(i), Payload: fmt.Appendf(nil, "p%d", i)}
	}
	if _, err := sess.Submit(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	for range n {
		waitResult(t, ctx, sess)
	}
	// Every node applied the session: Raft replicated over TLS.
	c.WaitFor("the session on every node", 10*time.Second, func() bool {
		for _, nd := range c.Nodes {
			if _, ok := nd.Srv.Node().FSM().Session(sess.ID()); !ok {
				return false
			}
		}
		return true
	})
}

// A client without the CA, a plaintext client and (with mTLS required) a
// client without a certificate are all refused; one with a certificate is
// served.
func TestTLSRefusesUntrustedClients(t *testing.T) {
	c, dir := tlsCluster(t, 1)
	addr := c.Nodes[0].Srv.GRPCAddr()
	if err := statusCall(t, addr, credentials.NewTLS(clientTLS(t, dir, true))); err != nil {
		t.Fatalf("client with the CA and a certificate: %v", err)
	}
	noCA := clientTLS(t, dir, true)
	noCA.RootCAs = nil // the system roots do not know the dev CA
	if err := statusCall(t, addr, credentials.NewTLS(noCA)); status.Code(err) != codes.Unavailable {
		t.Errorf("client without the CA: got %v, want Unavailable", err)
	}
	if err := statusCall(t, addr, credentials.NewTLS(clientTLS(t, dir, false))); status.Code(err) != codes.Unavailable {
		t.Errorf("client without a certificate under mTLS: got %v, want Unavailable", err)
	}
	if err := statusCall(t, addr, insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext client: got %v, want Unavailable", err)
	}
}

// Raft accepts only peers with a certificate from the CA: a TLS client
// without one, or with a certificate of another CA, is dropped during the
// handshake, and plaintext gets nowhere.
func TestTLSRaftRefusesStrangers(t *testing.T) {
	c, dir := tlsCluster(t, 1)
	raftAddr := c.Nodes[0].Srv.Node().RaftAddr()
	try := func(cfg *tls.Config) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", raftAddr, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		// raft's first byte is the RPC type; a refused certificate shows on
		// the first read under TLS 1.3.
		if _, err := conn.Write([]byte{0}); err != nil {
			return err
		}
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	noCert := clientTLS(t, dir, false)
	noCert.ServerName = "127.0.0.1"
	if err := try(noCert); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a Raft peer without a certificate: %v; want a certificate error", err)
	}
	other := t.TempDir()
	if err := tlsconf.GenerateDev(other, nil); err != nil {
		t.Fatal(err)
	}
	foreign, err := tlsconf.StaticClientConfig(filepath.Join(dir, tlsconf.DevCACert),
		filepath.Join(other, tlsconf.DevClientCert), filepath.Join(other, tlsconf.DevClientKey))
	if err != nil {
		t.Fatal(err)
	}
	foreign.ServerName = "127.0.0.1"
	if err := try(foreign); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a Raft peer of another CA: %v; want a certificate error", err)
	}
	good := clientTLS(t, dir, true)
	good.ServerName = "127.0.0.1"
	conn, err := tls.Dial("tcp", raftAddr, good)
	if err != nil {
		t.Fatalf("a Raft peer of the CA: %v", err)
	}
	conn.Close()
}
