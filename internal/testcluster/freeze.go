package testcluster

import (
	"context"
	"sync"

	"google.golang.org/grpc"
)

// gate holds a node's gRPC traffic while it is frozen.
type gate struct {
	mu     sync.Mutex
	thawed chan struct{} // nil while not frozen; closed by thaw
}

func (g *gate) freeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.thawed == nil {
		g.thawed = make(chan struct{})
	}
}

func (g *gate) thaw() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.thawed != nil {
		close(g.thawed)
		g.thawed = nil
	}
}

// wait blocks while the node is frozen. It gives up when the call's
// context ends (the client went away or the server stopped): there is
// nobody left to answer.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.thawed
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// options returns the interceptors that make the gate hold every call and
// stream: nothing is read, sent or finished while frozen, but connections
// stay open, as with a paused process.
func (g *gate) options() []grpc.ServerOption {
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		resp, err := h(ctx, req)
		if werr := g.wait(ctx); werr != nil {
			return nil, werr
		}
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := g.wait(ss.Context()); err != nil {
			return err
		}
		err := h(srv, gatedStream{ss, g})
		if werr := g.wait(ss.Context()); werr != nil {
			return werr
		}
		return err
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

type gatedStream struct {
	grpc.ServerStream
	g *gate
}

func (s gatedStream) SendMsg(m any) error {
	if err := s.g.wait(s.Context()); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

func (s gatedStream) RecvMsg(m any) error {
	if err := s.g.wait(s.Context()); err != nil {
		return err
	}
	err := s.ServerStream.RecvMsg(m)
	// A message that arrived while frozen is seen after the thaw.
	if werr := s.g.wait(s.Context()); werr != nil {
		return werr
	}
	return err
}

// Freeze makes node i stop answering on gRPC without closing a
// connection: calls and streams, open or new, neither receive nor send
// nor end until Thaw. Together with Partition (Raft traffic) it is what a
// paused process (SIGSTOP, docker pause) looks like from outside.
func (c *Cluster) Freeze(i int) { c.Nodes[i].gate.freeze() }

// Thaw undoes Freeze.
func (c *Cluster) Thaw(i int) { c.Nodes[i].gate.thaw() }
