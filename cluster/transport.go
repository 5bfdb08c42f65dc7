package cluster

import (
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
func newTransport(cfg Config, hlog *hclogAdapter) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft transport on %s: %w", cfg.RaftAddr, err)
	}
	adv := ln.Addr()
	if cfg.AdvertiseRaftAddr != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseRaftAddr); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("cluster: advertise address %q: %w", cfg.AdvertiseRaftAddr, err)
		}
	}
	if a, ok := adv.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, fmt.Errorf("cluster: raft address %s cannot be dialled by peers: set AdvertiseRaftAddr", adv)
	}
	stream := &streamLayer{ln: ln, advertise: adv, conns: make(map[*trackedConn]struct{})}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportPool,
		Timeout: transportTimeout,
		Logger:  hlog.Named("transport"),
	}), nil
}

var errStreamClosed = errors.New("raft stream layer closed")

// streamLayer is a raft.StreamLayer over TCP that tracks its connections.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	return s.track(c)
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

func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, errStreamClosed
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s *streamLayer
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}
