package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
)

func TestNodecacheHelpTeaches(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := execute(context.Background(), []string{"nodecache", "--help"}, noEnv, &out, &errOut); code != 0 {
		t.Fatalf("nodecache --help exited %d: %s", code, errOut.String())
	}
	for _, s := range []string{"--central", "--cache-size", "--bind", "--join", "rendezvous", "GRIDD_NODECACHE_", "Unimplemented", "TLS"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("nodecache help does not mention %q", s)
		}
	}
}

func TestNodecacheBadFlags(t *testing.T) {
	env := func(k, v string) func(string) (string, bool) {
		return func(name string) (string, bool) { return v, name == k }
	}
	for _, tt := range []struct {
		args []string
		env  func(string) (string, bool)
		want string
	}{
		{[]string{"nodecache", "--central", " , "}, noEnv, "--central"},
		{[]string{"nodecache", "--cache-size", "lots"}, noEnv, "cache-size"},
		{[]string{"nodecache", "--cache-size", "0"}, noEnv, "--cache-size"},
		{[]string{"nodecache", "--cache-size", "-1GB"}, noEnv, "--cache-size"},
		{[]string{"nodecache", "--fetch-timeout", "0s"}, noEnv, "--fetch-timeout"},
		{[]string{"nodecache", "--central-retry", "-1s"}, noEnv, "--central-retry"},
		{[]string{"nodecache", "--bind", "", "--join", "127.0.0.1:7946"}, noEnv, "--join"},
		{[]string{"nodecache", "--log-level", "loud"}, noEnv, "--log-level"},
		{[]string{"nodecache", "--bogus"}, noEnv, "see gridd nodecache --help"},
		{[]string{"nodecache"}, env("GRIDD_NODECACHE_CACHE_SIZE", "huge"), "GRIDD_NODECACHE_CACHE_SIZE"},
		{[]string{"nodecache", "--addr", "127.0.0.1:0", "--metrics-addr", "", "--bind", "127.0.0.1:notaport"}, noEnv, "memberlist bind address"},
	} {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), tt.args, tt.env, &out, &errOut)
		msg := strings.TrimSpace(errOut.String())
		if code != 1 || !strings.HasPrefix(msg, "gridd: ") || !strings.Contains(msg, tt.want) || strings.Count(msg, "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want 1 and one line mentioning %q", tt.args, code, msg, tt.want)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// gridd nodecache against a real node, its central address from the
// environment: a level written to the cluster is read through it, the
// metrics count the hit, and cancelling the command exits 0.
func TestNodecacheServesAndStops(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	addr, metrics := freePort(t), freePort(t)
	lookup := func(k string) (string, bool) {
		if k == "GRIDD_NODECACHE_CENTRAL" {
			return c.Addrs()[0], true
		}
		return "", false
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errOut syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- execute(ctx, []string{"nodecache", "--addr", addr, "--bind", "127.0.0.1:0", "--metrics-addr", metrics,
			"--cache-size", "64MB"}, lookup, io.Discard, &errOut)
	}()
	defer func() {
		cancel()
		if code := <-exited; code != 0 {
			t.Errorf("nodecache exited %d: %s", code, errOut.String())
		}
	}()

	cc, err := grpc.NewClient(c.Addrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	s, err := griddpb.NewQueueClient(cc).CreateSession(rctx, &griddpb.CreateSessionRequest{App: "nodecache-cmd"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := griddpb.NewCacheClient(cc).SetSharedData(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Send(&griddpb.SharedDataChunk{Header: &griddpb.SharedDataHeader{SessionId: s.Id, Size: 5}, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if _, err := up.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}

	nc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	read := func() (string, error) {
		down, err := griddpb.NewCacheClient(nc).GetSharedData(rctx, &griddpb.GetSharedDataRequest{SessionId: s.Id, UpdateLevel: 1})
		if err != nil {
			return "", err
		}
		var b []byte
		for {
			m, err := down.Recv()
			if err == io.EOF {
				return string(b), nil
			}
			if err != nil {
				return "", err
			}
			b = append(b, m.Data...)
		}
	}
	var got string
	deadline := time.Now().Add(20 * time.Second)
	for got, err = read(); err != nil && time.Now().Before(deadline); got, err = read() {
		time.Sleep(20 * time.Millisecond) // the node cache may still be starting
	}
	if err != nil || got != "hello" {
		t.Fatalf("read through the node cache: %q, %v; stderr: %s", got, err, errOut.String())
	}
	if _, err := read(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"gridd_nodecache_hits_total 1", "gridd_nodecache_upstream_fetches_total 1", "gridd_nodecache_evictions_total 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
