// Package rpc is gridd's gRPC edge: the Queue and Cluster services. It
// validates input before anything is proposed, forwards calls and streams
// from followers to the leader, and maps the sentinel errors of the layers
// below to gRPC statuses in one place (errors.go).
package rpc

import (
	"context"
	"crypto/rand"
	"google.golang.org/grpc/credentials"
	"log/slog"
	"sync"
	"time"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// maxMsgSize bounds one gRPC message: a batch of tasks travels as one.
const maxMsgSize = 256 << 20

// MaxMsgSize is exported for the server's listener options.
const MaxMsgSize = maxMsgSize

// Options configure the services.
type Options struct {
	NodeID string
	Limits Limits
	Cache  CacheLimits
	Logger *slog.Logger
	// PeerCredentials secure calls forwarded to the leader (TLS between
	// nodes); nil means plaintext.
	PeerCredentials credentials.TransportCredentials
}

// Server implements the Queue service.
type Server struct {
	griddpb.UnimplementedQueueServer
	node   *cluster.Node
	fsm    *fsm.FSM
	disp   *dispatch.Dispatcher
	fwd    *forwarder
	limits Limits
	cache  *cacheServer
	log    *slog.Logger
	admit  *admission

	idMu    sync.Mutex
	entropy *ulid.MonotonicEntropy
}

// New builds the services over a node and its dispatcher.
func New(node *cluster.Node, disp *dispatch.Dispatcher, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		node:    node,
		fsm:     node.FSM(),
		disp:    disp,
		fwd:     newForwarder(node, opts.NodeID),
		limits:  opts.Limits.withDefaults(),
		log:     opts.Logger.With("component", "rpc"),
		admit:   newAdmission(),
		entropy: ulid.Monotonic(rand.Reader, 0),
	}
	if opts.PeerCredentials != nil {
		s.fwd.creds = opts.PeerCredentials
	}
	s.cache = &cacheServer{s: s, lim: opts.Cache.withDefaults()}
	return s
}

// Register adds the Queue, Cluster and Cache services to g.
func (s *Server) Register(g *grpc.Server) {
	griddpb.RegisterQueueServer(g, s)
	griddpb.RegisterClusterServer(g, &clusterServer{s: s})
	s.RegisterCache(g)
}

// Close releases the connections used for forwarding.
func (s *Server) Close() { s.fwd.close() }

func (s *Server) newID() string {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	return ulid.MustNew(ulid.Now(), s.entropy).String()
}

// propose stamps the leader's clock and proposes cmd; business errors in
// the response come back as errors.
func (s *Server) propose(ctx context.Context, cmd *fsmpb.Command) (fsm.Response, error) {
	cmd.NowUnixMs = time.Now().UnixMilli()
	resp, err := s.node.Propose(ctx, cmd)
	if err != nil {
		return resp, err
	}
	return resp, resp.Err
}

func (s *Server) sessionPB(info *fsm.SessionInfo) *griddpb.Session {
	if info == nil {
		return nil
	}
	a := info.Attrs
	state := griddpb.SessionState_SESSION_STATE_OPEN
	if info.Closed {
		state = griddpb.SessionState_SESSION_STATE_CLOSED
	}
	return &griddpb.Session{
		Id:  info.ID,
		App: info.App,
		Attributes: &griddpb.SessionAttributes{
			Priority: a.Priority, ClientId: a.ClientID, MinWorkers: a.MinWorkers,
			MaxWorkers: a.MaxWorkers, IdleTimeoutMs: a.IdleTimeoutMs, Preemptible: a.Preemptible,
			CleanupOnClientExit: a.CleanupOnClientExit, MaxInflightBatchesPerWorker: a.MaxInflightBatchesPerWorker,
			Tags: a.Tags, TaskTimeoutMs: a.TaskTimeoutMs, MaxAttempts: a.MaxAttempts,
			RetryBackoffMs: a.RetryBackoffMs, RetryBackoffMaxMs: a.RetryBackoffMaxMs,
		},
		State:         state,
		CreatedUnixMs: info.CreatedUnixMs,
		UpdatedUnixMs: info.UpdatedUnixMs,
		Counts: &griddpb.TaskCounts{
			Submitted: info.Submitted, Pending: info.Pending, Completed: info.Completed,
			DeadLettered: info.DeadLettered, Retried: info.Retried, ResultsUnacked: info.ResultsUnacked,
			DeadLettersUnacked: info.DeadLettersUnacked, Running: uint64(s.disp.Running(info.ID)),
			Cancelled: info.Cancelled, Retrying: info.Retrying, TimedOut: info.TimedOut,
		},
	}
}

// CreateSession creates a session; a retry with the same request_id returns
// the session the first call created.
func (s *Server) CreateSession(ctx context.Context, req *griddpb.CreateSessionRequest) (*griddpb.Session, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).CreateSession(s.fwd.outgoing(ctx), req)
	}
	if err := ValidateCreate(req); err != nil {
		return nil, toStatus(err)
	}
	if err := checkCreateApp(ctx, req.App); err != nil {
		return nil, err
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	release, err := s.admitSession(req)
	if err != nil {
		return nil, err
	}
	defer release()
	id := req.SessionId
	if id == "" {
		id = s.newID()
	}
	resp, err := s.propose(ctx, &fsmpb.Command{RequestId: req.RequestId, Cmd: &fsmpb.Command_CreateSession{
		CreateSession: &fsmpb.CreateSession{SessionId: id, App: req.App, Attrs: attrsToFSM(req.Attributes)},
	}})
	if err != nil {
		return nil, toStatus(err)
	}
	return s.sessionPB(resp.Session), nil
}

// UpdateSession changes the attributes that are set in the update.
func (s *Server) UpdateSession(ctx context.Context, req *griddpb.UpdateSessionRequest) (*griddpb.Session, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).UpdateSession(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := validateID("session", req.SessionId); err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.propose(ctx, &fsmpb.Command{RequestId: req.RequestId, Cmd: &fsmpb.Command_UpdateSession{
		UpdateSession: updateToFSM(req.SessionId, req.Update),
	}})
	if err != nil {
		return nil, toStatus(err)
	}
	return s.sessionPB(resp.Session), nil
}

// CloseSession closes a session: pending tasks are cancelled and its
// results and dead letters dropped.
func (s *Server) CloseSession(ctx context.Context, req *griddpb.CloseSessionRequest) (*griddpb.Session, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).CloseSession(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := validateID("session", req.SessionId); err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.propose(ctx, &fsmpb.Command{RequestId: req.RequestId, Cmd: &fsmpb.Command_CloseSession{
		CloseSession: &fsmpb.CloseSession{SessionId: req.SessionId},
	}})
	if err != nil {
		return nil, toStatus(err)
	}
	return s.sessionPB(resp.Session), nil
}

// GetSession is linearizable: it is served by the leader after it confirms
// its leadership with a quorum.
func (s *Server) GetSession(ctx context.Context, req *griddpb.GetSessionRequest) (*griddpb.Session, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).GetSession(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := validateID("session", req.SessionId); err != nil {
		return nil, toStatus(err)
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, toStatus(err)
	}
	info, ok := s.fsm.Session(req.SessionId)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "session %q not found", req.SessionId)
	}
	return s.sessionPB(&info), nil
}

// ListSessions lists sessions, linearizably like GetSession.
func (s *Server) ListSessions(ctx context.Context, req *griddpb.ListSessionsRequest) (*griddpb.ListSessionsResponse, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).ListSessions(s.fwd.outgoing(ctx), req)
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, toStatus(err)
	}
	out := &griddpb.ListSessionsResponse{}
	for _, info := range s.fsm.Sessions() {
		if info.Closed && !req.IncludeClosed || !sessionVisible(ctx, info.App) {
			continue
		}
		out.Sessions = append(out.Sessions, s.sessionPB(&info))
	}
	return out, nil
}

// mdValue returns the first value of a metadata key of the incoming call.
func mdValue(ctx context.Context, key string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
