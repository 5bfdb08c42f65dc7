package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MDRequestID names the metadata that carries a request id. A client may
// set it; otherwise the first node to see the call makes one. Forwarding
// copies the caller's metadata, so the leader logs the same id as the
// follower that forwarded the call, and both return it in the response
// headers.
const MDRequestID = "x-request-id"

// maxRequestIDLen bounds a caller's request id, which ends up in every log
// line of the call.
const maxRequestIDLen = 128

// streamKinds are the values of gridd_connections' kind label.
var streamKinds = []string{"client", "dead_letters", "worker", "worker_updates", "shared_data"}

var kindOfMethod = map[string]string{
	griddpb.Queue_ClientStream_FullMethodName:            "client",
	griddpb.Queue_ClientStreamDeadLetters_FullMethodName: "dead_letters",
	griddpb.Queue_WorkerStream_FullMethodName:            "worker",
	griddpb.Queue_WorkerUpdate_FullMethodName:            "worker_updates",
	griddpb.Cache_SetSharedData_FullMethodName:           "shared_data",
	griddpb.Cache_UpdateSharedData_FullMethodName:        "shared_data",
	griddpb.Cache_GetSharedData_FullMethodName:           "shared_data",
}

type ctxKey struct{}

// RequestID returns the request id of the gRPC call ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// withRequestID takes the caller's request id or makes one, and puts it
// where handlers (context value), forwarding (incoming metadata) and the
// caller (response header) find it.
func withRequestID(ctx context.Context) (context.Context, string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var id string
	if v := md.Get(MDRequestID); len(v) > 0 {
		id = v[0]
		if !validRequestID(id) {
			return ctx, "", status.Errorf(codes.InvalidArgument,
				"%s must be 1 to %d printable ASCII characters without spaces", MDRequestID, maxRequestIDLen)
		}
	} else {
		id = ulid.Make().String()
		md = md.Copy()
		md.Set(MDRequestID, id)
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(MDRequestID, id))
	return context.WithValue(ctx, ctxKey{}, id), id, nil
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// interceptors count, time and log every call, and give it a request id.
func interceptors(mx *nodeMetrics, log *slog.Logger) []grpc.ServerOption {
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		ctx, _, err := withRequestID(ss.Context())
		if err == nil {
			if kind, ok := kindOfMethod[info.FullMethod]; ok {
				g := mx.streams.WithLabelValues(kind)
				g.Inc()
				defer g.Dec()
			}
			err = h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
		}
		observeCall(ctx, mx, log, info.FullMethod, start, err)
		return err
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unaryInterceptor(mx, log)), grpc.ChainStreamInterceptor(stream)}
}

func unaryInterceptor(mx *nodeMetrics, log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx, _, err := withRequestID(ctx)
		var resp any
		if err == nil {
			resp, err = h(ctx, req)
		}
		observeCall(ctx, mx, log, info.FullMethod, start, err)
		return resp, err
	}
}

func observeCall(ctx context.Context, mx *nodeMetrics, log *slog.Logger, method string, start time.Time, err error) {
	elapsed := time.Since(start)
	code := status.Code(err)
	mx.requests.WithLabelValues(method, code.String()).Inc()
	mx.latency.WithLabelValues(method).Observe(elapsed.Seconds())
	level := slog.LevelDebug
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		// The caller cannot fix these; the operator must see them.
		level = slog.LevelWarn
	}
	if !log.Enabled(ctx, level) {
		return
	}
	// requestIDHandler adds the request id from ctx.
	attrs := []slog.Attr{slog.String("method", method),
		slog.String("code", code.String()), slog.Duration("elapsed", elapsed)}
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("gridd-forwarded")) > 0 {
		attrs = append(attrs, slog.String("forwarded_by", md.Get("gridd-forwarded")[0]))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	log.LogAttrs(ctx, level, "grpc call", attrs...)
}

// ctxStream gives a stream handler the context with the request id.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

// requestIDHandler adds the request id of the call a log record belongs
// to, when the record was logged with the call's context.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
