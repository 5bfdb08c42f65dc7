package rpc

import (
	"context"

	"github.com/gridd/gridd/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkApp refuses a session whose app the caller's key may not use, with
// the very NotFound a missing session gets: a key for app A cannot even
// learn that a session of app B exists. A session that does not exist
// passes, for the handler to answer as it always does. It runs on the
// leader, whose state has every session the caller could have created.
func (s *Server) checkApp(ctx context.Context, sessionID string) error {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil
	}
	if info, ok := s.fsm.Session(sessionID); ok && !id.AllowsApp(info.App) {
		return status.Errorf(codes.NotFound, "session %q not found", sessionID)
	}
	return nil
}

// checkCreateApp refuses to create a session in an app the caller's key
// may not use.
func checkCreateApp(ctx context.Context, app string) error {
	id := auth.FromContext(ctx)
	if id == nil || id.AllowsApp(app) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "API key %q may not use app %q; its apps are %q",
		id.Name, app, id.Apps())
}

// sessionVisible reports whether the caller may see sessions of app, for
// filtering lists.
func sessionVisible(ctx context.Context, app string) bool {
	return auth.FromContext(ctx).AllowsApp(app)
}

// workerVisible reports whether the caller may see a worker bound to
// session: a key limited to some apps sees only the workers serving them,
// not idle ones, which any app could get.
func (s *Server) workerVisible(ctx context.Context, session string) bool {
	id := auth.FromContext(ctx)
	if id == nil || id.Apps() == nil {
		return true
	}
	info, ok := s.fsm.Session(session)
	return ok && id.AllowsApp(info.App)
}
