package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// public methods need no key: load balancers and probes call them, and
// they reveal nothing of any app.
var public = map[string]bool{
	griddpb.Cluster_Status_FullMethodName: true,
	healthpb.Health_Check_FullMethodName:  true,
	healthpb.Health_Watch_FullMethodName:  true,
}

// allowed lists the methods of each role but admin, which may call every
// method. A method missing here (a new one included) is admin-only: the
// safe default.
var allowed = map[Role]map[string]bool{
	RoleClient: set(
		griddpb.Queue_CreateSession_FullMethodName,
		griddpb.Queue_UpdateSession_FullMethodName,
		griddpb.Queue_CloseSession_FullMethodName,
		griddpb.Queue_GetSession_FullMethodName,
		griddpb.Queue_ListSessions_FullMethodName,
		griddpb.Queue_ClientStream_FullMethodName,
		griddpb.Queue_ClientStreamDeadLetters_FullMethodName,
		griddpb.Queue_ListDeadLetters_FullMethodName,
		griddpb.Queue_RetryDeadLetters_FullMethodName,
		griddpb.Queue_PurgeDeadLetters_FullMethodName,
		griddpb.Queue_ListWorkers_FullMethodName,
		griddpb.Queue_CancelTasks_FullMethodName,
		griddpb.Queue_GetTasks_FullMethodName,
		griddpb.Cache_SetSharedData_FullMethodName,
		griddpb.Cache_UpdateSharedData_FullMethodName,
		griddpb.Cache_GetSharedData_FullMethodName,
		griddpb.Cache_DeleteSharedData_FullMethodName,
	),
	RoleWorker: set(
		griddpb.Queue_WorkerUpdate_FullMethodName,
		griddpb.Queue_WorkerStream_FullMethodName,
		griddpb.Cache_GetSharedData_FullMethodName,
	),
	RoleNode: set(griddpb.Cluster_Join_FullMethodName),
}

func set(methods ...string) map[string]bool {
	m := make(map[string]bool, len(methods))
	for _, x := range methods {
		m[x] = true
	}
	return m
}

// Allowed reports whether role may call the gRPC method (its full name).
func Allowed(role Role, method string) bool {
	return role == RoleAdmin || allowed[role][method]
}

// authorize checks the key of an incoming call for method and returns the
// context the handler gets: with the caller's Identity in it.
func (a *Authenticator) authorize(ctx context.Context, method string) (context.Context, error) {
	if public[method] {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var key string
	if v := md.Get(MDAPIKey); len(v) > 0 {
		key = v[0]
	}
	id, err := a.Verify(key)
	switch {
	case errors.Is(err, ErrMissingKey):
		return nil, status.Error(codes.Unauthenticated,
			"missing API key: this cluster requires one in the api_key metadata header (gridctl --api-key or GRIDCTL_API_KEY, client.WithAPIKey, worker Options.APIKey)")
	case err != nil:
		return nil, status.Error(codes.PermissionDenied, "API key not recognised: it is not in this cluster's keys file (or was revoked)")
	}
	if !Allowed(id.Role, method) {
		return nil, status.Error(codes.PermissionDenied,
			fmt.Sprintf("API key %q has role %s, which may not call %s", id.Name, id.Role, method))
	}
	return WithIdentity(ctx, id), nil
}

// UnaryInterceptor checks the key of every unary call.
func (a *Authenticator) UnaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		actx, err := a.authorize(ctx, info.FullMethod)
		if err != nil {
			log.Debug("call refused", "method", info.FullMethod, "err", err)
			return nil, err
		}
		return h(actx, req)
	}
}

// StreamInterceptor checks the key once when a stream opens: the verdict
// holds for the stream's life, so a long stream outlives a revocation
// until it ends (see docs/SECURITY.md).
func (a *Authenticator) StreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		actx, err := a.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			log.Debug("stream refused", "method", info.FullMethod, "err", err)
			return err
		}
		return h(srv, &identityStream{ServerStream: ss, ctx: actx})
	}
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
