package server

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// BenchmarkUnaryInterceptor measures what metrics and request ids add to
// every unary call (handler excluded), with and without a caller's id.
func BenchmarkUnaryInterceptor(b *testing.B) {
	mx := newNodeMetrics()
	log := slog.New(requestIDHandler{slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})})
	ic := unaryInterceptor(mx, log)
	info := &grpc.UnaryServerInfo{FullMethod: griddpb.Queue_GetSession_FullMethodName}
	h := func(context.Context, any) (any, error) { return nil, nil }
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"generated-id", metadata.NewIncomingContext(context.Background(), metadata.MD{})},
		{"caller-id", metadata.NewIncomingContext(context.Background(), metadata.Pairs(MDRequestID, "req-123"))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ic(tc.ctx, nil, info, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
