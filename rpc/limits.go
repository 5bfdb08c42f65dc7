package rpc

import (
	"sync"

	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// admission enforces the leader's quotas (pending tasks per session, open
// sessions per app). The FSM's counts only move once a proposal commits, so
// the proposals under way are reserved here too: concurrent batches of one
// stream (up to maxProposalsPerStream) cannot all squeeze under the cap.
type admission struct {
	mu       sync.Mutex
	tasks    map[string]int // session -> new tasks of batches being proposed
	sessions map[string]int // app -> sessions being created
}

func newAdmission() *admission {
	return &admission{tasks: make(map[string]int), sessions: make(map[string]int)}
}

// admitBatch reserves room for the tasks of b the session does not know
// yet, or says why there is none. release must be called once the proposal
// is over (committed or not): the FSM's pending count then takes over.
func (s *Server) admitBatch(sid string, b *griddpb.Batch) (release func(), err error) {
	limit := s.limits.MaxPendingPerSession
	if limit <= 0 {
		return func() {}, nil
	}
	ids := make([]string, len(b.Messages))
	for i, m := range b.Messages {
		ids[i] = m.Id
	}
	// Counted outside the lock, which all sessions share: a task committed
	// meanwhile is counted twice, which errs on the safe side.
	fresh := s.fsm.UnknownTasks(sid, ids)
	if fresh == 0 {
		return func() {}, nil // a resend: it adds nothing
	}
	if fresh > limit {
		// Waiting would never help: the batch alone is over the cap.
		return nil, status.Errorf(codes.FailedPrecondition,
			"batch %d adds %d tasks to session %s, more than the limit of %d pending tasks per session: submit smaller batches (client.WithMaxBatch) or raise --max-pending-per-session",
			b.Seq, fresh, sid, limit)
	}
	a := s.admit
	a.mu.Lock()
	defer a.mu.Unlock()
	info, _ := s.fsm.Session(sid)
	pending := int(info.Pending) + a.tasks[sid]
	if pending+fresh > limit {
		return nil, status.Errorf(codes.ResourceExhausted,
			"session %s has %d pending tasks, the limit is %d: wait for results or raise --max-pending-per-session",
			sid, pending, limit)
	}
	a.tasks[sid] += fresh
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.tasks[sid] -= fresh; a.tasks[sid] <= 0 {
			delete(a.tasks, sid)
		}
	}, nil
}

// admitSession reserves a session of app, or says why the app has no room.
// A retried create (same request id, or a session id that exists) is let
// through: the state machine answers it as the first time.
func (s *Server) admitSession(req *griddpb.CreateSessionRequest) (release func(), err error) {
	limit := s.limits.MaxSessionsPerApp
	if limit <= 0 {
		return func() {}, nil
	}
	if req.RequestId != "" {
		if _, ok := s.fsm.Answer(req.RequestId); ok {
			return func() {}, nil
		}
	}
	if req.SessionId != "" {
		if _, ok := s.fsm.Session(req.SessionId); ok {
			return func() {}, nil
		}
	}
	a := s.admit
	a.mu.Lock()
	defer a.mu.Unlock()
	open := s.fsm.OpenSessions(req.App) + a.sessions[req.App]
	if open >= limit {
		return nil, status.Errorf(codes.ResourceExhausted,
			"app %q has %d open sessions, the limit is %d: close sessions it no longer needs or raise --max-sessions-per-app",
			req.App, open, limit)
	}
	a.sessions[req.App]++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.sessions[req.App]--; a.sessions[req.App] <= 0 {
			delete(a.sessions, req.App)
		}
	}, nil
}
