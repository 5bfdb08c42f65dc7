package cache

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gridd/gridd/internal/testcluster"
	pb "github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/server"
	"github.com/gridd/gridd/tlsconf"
)

// Node caches in front of a TLS cluster, with TLS on their own listeners
// and encrypted gossip: a level still costs one central read, the second
// cache gets it from its peer over TLS, and neither a plaintext client nor
// a member with another gossip key gets in.
func TestTLSAndGossipEncryption(t *testing.T) {
	dir := t.TempDir()
	if err := tlsconf.GenerateDev(dir, nil); err != nil {
		t.Fatal(err)
	}
	src, err := tlsconf.Load(tlsconf.Files{Cert: filepath.Join(dir, tlsconf.DevServerCert),
		Key: filepath.Join(dir, tlsconf.DevServerKey), CA: filepath.Join(dir, tlsconf.DevCACert)}, tlsconf.ClientAuthRequire)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := tlsconf.StaticClientConfig(filepath.Join(dir, tlsconf.DevCACert),
		filepath.Join(dir, tlsconf.DevClientCert), filepath.Join(dir, tlsconf.DevClientKey))
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(clientCfg)
	r := &realCentral{c: testcluster.Start(t, 3, testcluster.Options{Configure: func(_ int, cfg *server.Config) { cfg.TLS = src }})}
	for _, a := range r.c.Addrs() {
		cc, err := grpc.NewClient(a, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20), grpc.MaxCallSendMsgSize(4<<20)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		r.nodes = append(r.nodes, cc)
	}

	key := bytes.Repeat([]byte{7}, 32)
	start := func(join []string, gossipKey []byte) (*Service, error) {
		s, err := Start(ServiceConfig{Addr: "127.0.0.1:0", PeerBind: "127.0.0.1:0", Join: join, LocalPeers: true,
			Name: fmt.Sprintf("tls-nc-%d", nameSeq.Add(1)), Logger: testLogger(t),
			Cache: Config{MaxBytes: 64 << 20, Central: r.c.Addrs()}, TLS: src, GossipKey: gossipKey})
		if err == nil {
			t.Cleanup(func() { _ = s.Close() })
		}
		return s, err
	}
	a, err := start(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := start([]string{a.Peers.Addr()}, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Service{a, b} {
		waitFor(t, "both node caches to see each other", func() bool { return len(s.Peers.Members()) == 2 })
	}
	// Another key: the join fails (StartPeers refuses to run alone when
	// its join list does not answer), or at least nobody admits it.
	if s, err := start([]string{a.Peers.Addr()}, bytes.Repeat([]byte{8}, 32)); err == nil && len(s.Peers.Members()) != 1 {
		t.Fatalf("a member with another gossip key joined: it sees %d members", len(s.Peers.Members()))
	}
	if n := len(a.Peers.Members()); n != 2 {
		t.Fatalf("after a member with another gossip key tried: %d members, want 2", n)
	}
	if _, err := start(nil, []byte("short")); err == nil {
		t.Fatal("a 5-byte gossip key was accepted")
	}

	sid := r.session(t)
	v1 := payload(1<<20+5, 3)
	if lv := r.write(t, sid, true, v1); lv != 1 {
		t.Fatalf("first level is %d", lv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, s := range []*Service{a, b} {
		cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		if _, data, err := download(ctx, pb.NewCacheClient(cc), get(sid, 1)); err != nil || !bytes.Equal(data, v1) {
			t.Fatalf("cache %d over TLS: %v", i, err)
		}
	}
	caches := []*Service{a, b}
	if n := sum(caches, func(s Stats) uint64 { return s.UpstreamFetches }); n != 1 {
		t.Errorf("%d central reads of one level, want 1", n)
	}
	if n := sum(caches, func(s Stats) uint64 { return s.PeerHits }); n != 1 {
		t.Errorf("%d levels from a peer over TLS, want 1", n)
	}
	plain, err := grpc.NewClient(a.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if _, _, err := download(pctx, pb.NewCacheClient(plain), get(sid, 1)); err == nil {
		t.Error("a plaintext client read from a TLS node cache")
	}
}
