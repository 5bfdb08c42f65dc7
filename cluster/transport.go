package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// newTransport is raft's TCP transport over a stream layer that closes
// every connection when the transport closes. raft's own TCP layer only
// closes the listener, which leaves goroutines reading from connections
// that peers keep open, and lets a "killed" node keep talking.
func newTransport(cfg Config, hlog *hclogAdapter) (*raft.NetworkTransport, *streamLayer, error) {
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: raft transport on %s: %w", cfg.RaftAddr, err)
	}
	adv := ln.Addr()
	if cfg.AdvertiseRaftAddr != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseRaftAddr); err != nil {
			_ = ln.Close()
			return nil, nil, fmt.Errorf("cluster: advertise address %q: %w", cfg.AdvertiseRaftAddr, err)
		}
	}
	if a, ok := adv.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, nil, fmt.Errorf("cluster: raft address %s cannot be dialled by peers: set AdvertiseRaftAddr", adv)
	}
	stream := &streamLayer{ln: ln, advertise: adv, conns: make(map[*trackedConn]struct{}),
		tlsServer: cfg.TLSServer, tlsClient: cfg.TLSClient}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportPool,
		Timeout: transportTimeout,
		Logger:  hlog.Named("transport"),
	}), stream, nil
}

// errPartitioned is what dialling a peer returns while it is cut off.
var errPartitioned = errors.New("raft peer unreachable: partitioned for fault injection")

var errStreamClosed = errors.New("raft stream layer closed")

// streamLayer is a raft.StreamLayer over TCP that tracks its connections.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	// tlsServer and tlsClient, when set, wrap accepted and dialled
	// connections; tlsClient(addr) gives the config that verifies addr.
	tlsServer *tls.Config
	tlsClient func(addr string) *tls.Config

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	closed  bool
	blocked map[string]bool // peer raft addresses cut off (fault injection)
}

// block cuts this node off from the given peers' Raft addresses (nil heals):
// dials to them fail and connections this node opened to them close.
// Connections they opened to this node are theirs to close, so a partition
// is made by blocking on both sides.
func (s *streamLayer) block(addrs []string) {
	s.mu.Lock()
	s.blocked = make(map[string]bool, len(addrs))
	for _, a := range addrs {
		s.blocked[a] = true
	}
	var cut []*trackedConn
	for c := range s.conns {
		if c.peer != "" && s.blocked[c.peer] {
			cut = append(cut, c)
		}
	}
	s.mu.Unlock()
	for _, c := range cut {
		_ = c.Close()
	}
}

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if s.tlsServer != nil {
		// The handshake runs on the first read, in raft's goroutine for
		// this connection, so a slow or hostile peer does not hold up
		// accepting others; a peer without a certificate from the CA
		// fails there and raft drops the connection.
		c = tls.Server(c, s.tlsServer)
	}
	tc, err := s.track(c, "")
	if err != nil {
		return nil, err
	}
	return tc, nil
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.mu.Lock()
	cut := s.blocked[string(addr)]
	s.mu.Unlock()
	if cut {
		return nil, errPartitioned
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if s.tlsClient != nil {
		tc := tls.Client(c, s.tlsClient(string(addr)))
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("raft TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	tc, err := s.track(c, string(addr))
	if err != nil {
		return nil, err
	}
	return tc, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Close closes the listener and every open connection.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = make(map[*trackedConn]struct{})
	s.mu.Unlock()
	err := s.ln.Close()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

func (s *streamLayer) track(c net.Conn, peer string) (*trackedConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, errStreamClosed
	}
	tc := &trackedConn{Conn: c, s: s, peer: peer}
	s.conns[tc] = struct{}{}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s    *streamLayer
	peer string // the Raft address dialled; "" for accepted connections
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// Partition cuts this node's Raft traffic to the given peer Raft addresses,
// for fault-injection tests; Partition(nil) heals it. Apply it on both
// sides of the cut: see streamLayer.block.
func (n *Node) Partition(peerRaftAddrs []string) {
	if n.stream != nil {
		n.stream.block(peerRaftAddrs)
	}
}
