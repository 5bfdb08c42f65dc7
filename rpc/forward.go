package rpc

import (
	"context"
	"fmt"
	"google.golang.org/grpc/credentials"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Metadata keys used between nodes and towards clients.
const (
	// mdForwarded marks a call a follower forwarded; the receiver does not
	// forward it again, so a stale leader hint cannot make calls loop.
	mdForwarded = "gridd-forwarded"
	// MDLeader is set in the response headers of a forwarded call and in
	// Unavailable errors: the leader's gRPC address, for clients that want
	// to talk to it directly.
	MDLeader = "gridd-leader"
)

// leaderSource is what forwarding needs to know of the cluster.
type leaderSource interface {
	IsLeader() bool
	// Ready: leader, and its state machine has applied every entry
	// committed before it took office.
	Ready() bool
	LeaderGRPCAddr() string
}

// forwarder keeps one connection per leader address.
type forwarder struct {
	src    leaderSource
	nodeID string
	wait   time.Duration // how long to wait for an election before giving up
	creds  credentials.TransportCredentials

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newForwarder(src leaderSource, nodeID string) *forwarder {
	return &forwarder{src: src, nodeID: nodeID, wait: 3 * time.Second, conns: map[string]*grpc.ClientConn{},
		creds: insecure.NewCredentials()}
}

// leaderConn returns nil when this node is the leader and must serve the
// call itself, and otherwise a connection to the leader. It waits a little
// for an election in progress, and for a new leader to catch up: until then
// it could answer NotFound for a session it has not applied yet.
func (f *forwarder) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	deadline := time.Now().Add(f.wait)
	for {
		if f.src.Ready() {
			return nil, nil
		}
		leading := f.src.IsLeader()
		if md, _ := metadata.FromIncomingContext(ctx); !leading && len(md.Get(mdForwarded)) > 0 {
			return nil, f.notLeader("this node was forwarded the call but is not the leader")
		}
		if addr := f.src.LeaderGRPCAddr(); addr != "" && !leading {
			// Tell the client where the leader is, so it can go there
			// directly next time.
			_ = grpc.SetHeader(ctx, metadata.Pairs(MDLeader, addr))
			return f.conn(addr)
		}
		if time.Now().After(deadline) {
			if leading {
				return nil, status.Error(codes.Unavailable, "this node was just elected leader and is still catching up; retry")
			}
			return nil, status.Error(codes.Unavailable, "no leader elected yet: the cluster may have lost its majority; retry")
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
}

func (f *forwarder) notLeader(msg string) error {
	leader := f.src.LeaderGRPCAddr()
	st := status.New(codes.Unavailable, fmt.Sprintf("%s; leader: %q", msg, leader))
	return st.Err()
}

func (f *forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(f.creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "cannot reach the leader at %s: %v", addr, err)
	}
	f.conns[addr] = c
	return c, nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for addr, c := range f.conns {
		_ = c.Close()
		delete(f.conns, addr)
	}
}

// outgoing copies the caller's metadata (api key, session and worker ids)
// onto the forwarded call and marks it forwarded.
func (f *forwarder) outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	for _, k := range []string{":authority", "content-type", "user-agent", "grpc-timeout"} {
		delete(md, k)
	}
	md.Set(mdForwarded, f.nodeID)
	return metadata.NewOutgoingContext(ctx, md)
}

// forwardStream pipes a bidirectional stream to the same method on the
// leader. Errors from the leader reach the client unchanged.
func (f *forwarder) forwardStream(ss grpc.ServerStream, conn *grpc.ClientConn, method string,
	newReq, newResp func() proto.Message) error {
	ctx, cancel := context.WithCancel(f.outgoing(ss.Context()))
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	go func() {
		for {
			m := newReq()
			if err := ss.RecvMsg(m); err != nil {
				if err == io.EOF {
					_ = cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if err := cs.SendMsg(m); err != nil {
				return // the receive side below sees the error
			}
		}
	}()
	for {
		m := newResp()
		if err := cs.RecvMsg(m); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(m); err != nil {
			return err
		}
	}
}
