package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/conn"
)

// ErrClientClosed is returned by a Client used after Close.
var ErrClientClosed = conn.ErrClosed

// Client is a connection to a gridd cluster. It is safe for concurrent use.
type Client struct {
	pool *conn.Pool
	opts options
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool
}

// Dial connects to the cluster at addrs (gRPC addresses of any of its
// nodes) and waits until a leader answers, at most the call timeout
// (WithCallTimeout, default 10 s) and never past ctx.
func Dial(ctx context.Context, addrs []string, opts ...Option) (*Client, error) {
	o := options{callTimeout: DefaultCallTimeout}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.callTimeout <= 0 {
		o.callTimeout = DefaultCallTimeout
	}
	pool, err := conn.New(conn.Config{
		Addrs:        addrs,
		TLS:          o.tls,
		APIKey:       o.apiKey,
		ProbeTimeout: min(o.callTimeout, conn.DefaultProbeTimeout),
		Logger:       o.logger,
		DialOptions:  o.dialOpts,
	})
	if err != nil {
		return nil, err
	}
	c := &Client{pool: pool, opts: o, log: o.logger.With("component", "sdk.client"),
		sessions: make(map[*Session]struct{})}
	wctx, cancel := context.WithTimeout(ctx, o.callTimeout)
	defer cancel()
	err = pool.Call(wctx, "dial", c.callOptions(), func(context.Context, *grpc.ClientConn) error { return nil })
	if err != nil {
		_ = pool.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) callOptions() conn.CallOptions {
	return conn.CallOptions{Timeout: c.opts.callTimeout, MinBackoff: c.opts.minBackoff,
		MaxBackoff: c.opts.maxBackoff}
}

func (c *Client) queue(ctx context.Context, op string, fn func(context.Context, griddpb.QueueClient) error) error {
	return c.pool.Call(ctx, op, c.callOptions(), func(ctx context.Context, cc *grpc.ClientConn) error {
		return fn(ctx, griddpb.NewQueueClient(cc))
	})
}

// newRequestID returns an idempotency key; one is generated per call and
// reused by every retry of that call, so a retried write is applied once.
func newRequestID() string { return ulid.Make().String() }

// ClusterStatus returns the leader's view of the cluster.
func (c *Client) ClusterStatus(ctx context.Context) (*griddpb.ClusterStatus, error) {
	var st *griddpb.ClusterStatus
	err := c.pool.Call(ctx, "cluster status", c.callOptions(), func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		st, err = griddpb.NewClusterClient(cc).Status(ctx, &griddpb.ClusterStatusRequest{})
		return err
	})
	return st, err
}

// GetSession returns a session's metadata and counters.
func (c *Client) GetSession(ctx context.Context, id string) (*griddpb.Session, error) {
	var s *griddpb.Session
	err := c.queue(ctx, "get session", func(ctx context.Context, q griddpb.QueueClient) error {
		var err error
		s, err = q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: id})
		return err
	})
	return s, err
}

// ListSessions returns the open sessions, and the closed ones too when
// includeClosed is set.
func (c *Client) ListSessions(ctx context.Context, includeClosed bool) ([]*griddpb.Session, error) {
	var resp *griddpb.ListSessionsResponse
	err := c.queue(ctx, "list sessions", func(ctx context.Context, q griddpb.QueueClient) error {
		var err error
		resp, err = q.ListSessions(ctx, &griddpb.ListSessionsRequest{IncludeClosed: includeClosed})
		return err
	})
	return resp.GetSessions(), err
}

// UpdateSession changes the attributes set in u.
func (c *Client) UpdateSession(ctx context.Context, id string, u *griddpb.SessionUpdate) (*griddpb.Session, error) {
	req := &griddpb.UpdateSessionRequest{RequestId: newRequestID(), SessionId: id, Update: u}
	var s *griddpb.Session
	err := c.queue(ctx, "update session", func(ctx context.Context, q griddpb.QueueClient) error {
		var err error
		s, err = q.UpdateSession(ctx, req)
		return err
	})
	return s, err
}

// CloseSession closes a session on the server: it takes no more tasks and
// its pending tasks are cancelled. Streams of a Session attached to it end.
func (c *Client) CloseSession(ctx context.Context, id string) (*griddpb.Session, error) {
	req := &griddpb.CloseSessionRequest{RequestId: newRequestID(), SessionId: id}
	var s *griddpb.Session
	err := c.queue(ctx, "close session", func(ctx context.Context, q griddpb.QueueClient) error {
		var err error
		s, err = q.CloseSession(ctx, req)
		return err
	})
	return s, err
}

// CreateSession creates a session with attrs (nil means all defaults) and
// attaches to it: the returned Session is ready to submit and streams
// results.
func (c *Client) CreateSession(ctx context.Context, attrs *griddpb.SessionAttributes,
	opts ...SessionOption) (*Session, error) {
	o := sessionDefaults(opts)
	req := &griddpb.CreateSessionRequest{RequestId: newRequestID(), Attributes: attrs,
		SessionId: o.id, App: o.app}
	var info *griddpb.Session
	err := c.queue(ctx, "create session", func(ctx context.Context, q griddpb.QueueClient) error {
		var err error
		info, err = q.CreateSession(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.attach(info.GetId(), o)
}

// OpenSession attaches to an existing session, for example after the
// process that created it restarted. Results the previous owner did not
// acknowledge are delivered again: the dedup memory lives in the Session
// value, not on the server.
func (c *Client) OpenSession(ctx context.Context, id string, opts ...SessionOption) (*Session, error) {
	info, err := c.GetSession(ctx, id)
	if err != nil {
		return nil, err
	}
	if info.GetState() == griddpb.SessionState_SESSION_STATE_CLOSED {
		return nil, status.Errorf(codes.FailedPrecondition, "gridd: session %s is closed", id)
	}
	return c.attach(id, sessionDefaults(opts))
}

func (c *Client) attach(id string, o sessionOptions) (*Session, error) {
	if id == "" {
		return nil, status.Error(codes.Internal, "gridd: server returned a session without an id")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClientClosed
	}
	s := newSession(c, id, o)
	c.sessions[s] = struct{}{}
	s.start()
	return s, nil
}

func (c *Client) forget(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, s)
}

// Close detaches every session of this client (see Session.Detach) and
// closes the connections.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sessions := make([]*Session, 0, len(c.sessions))
	for s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	var errs []error
	for _, s := range sessions {
		if err := s.Detach(); err != nil && !errors.Is(err, ErrDetached) {
			errs = append(errs, err)
		}
	}
	if err := c.pool.Close(); err != nil {
		errs = append(errs, fmt.Errorf("gridd: close connections: %w", err))
	}
	return errors.Join(errs...)
}
