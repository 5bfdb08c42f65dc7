package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/shared"
)

// SharedDataInfo describes a level of a session's shared data as the
// central cache stored it.
type SharedDataInfo struct {
	SessionID string
	Level     int64
	Size      int64
	SHA256    []byte
	Expires   time.Time // zero when the server did not say
}

func infoOf(i *griddpb.SharedDataInfo) SharedDataInfo {
	return SharedDataInfo{SessionID: i.GetSessionId(), Level: i.GetUpdateLevel(), Size: i.GetSize(),
		SHA256: i.GetSha256(), Expires: expires(i.GetExpiresUnixMs())}
}

// streamTimeout bounds one attempt of a shared-data transfer: the call
// timeout plus time for the bytes at a pessimistic 8 MiB/s, so that a large
// payload is not cut off while a dead node is still given up on.
func (c *Client) streamTimeout(size int) time.Duration {
	return c.opts.callTimeout + time.Duration(size/(8<<20))*time.Second
}

func (c *Client) cache(ctx context.Context, op string, size int,
	fn func(context.Context, griddpb.CacheClient) error) error {
	o := c.callOptions()
	o.Timeout = c.streamTimeout(size)
	return c.pool.Call(ctx, op, o, func(ctx context.Context, cc *grpc.ClientConn) error {
		return fn(ctx, griddpb.NewCacheClient(cc))
	})
}

// SetSharedData stores the first level of session's shared data in the
// central cache: level 0 means 1. It fails with AlreadyExists when the
// session has shared data (use UpdateSharedData). ttl 0 takes the server's
// default; the server caps it. data is sent in 1 MiB chunks with its
// SHA-256, and the upload is retried across failovers with one request id,
// so it is stored once.
func (c *Client) SetSharedData(ctx context.Context, session string, level int64, data []byte,
	ttl time.Duration) (SharedDataInfo, error) {
	return c.upload(ctx, "set shared data of session "+session, session, level, data, ttl,
		griddpb.CacheClient.SetSharedData)
}

// UpdateSharedData stores a new level of session's shared data, which must
// be higher than the current one; 0 means current + 1. It renews the TTL.
// The returned info says which level was stored.
func (c *Client) UpdateSharedData(ctx context.Context, session string, level int64, data []byte,
	ttl time.Duration) (SharedDataInfo, error) {
	return c.upload(ctx, "update shared data of session "+session, session, level, data, ttl,
		griddpb.CacheClient.UpdateSharedData)
}

type uploadMethod func(griddpb.CacheClient, context.Context, ...grpc.CallOption) (
	grpc.ClientStreamingClient[griddpb.SharedDataChunk, griddpb.SharedDataInfo], error)

func (c *Client) upload(ctx context.Context, op, session string, level int64, data []byte,
	ttl time.Duration, method uploadMethod) (SharedDataInfo, error) {
	if session == "" {
		return SharedDataInfo{}, status.Errorf(codes.InvalidArgument, "gridd: %s: no session id", op)
	}
	if level < 0 || ttl < 0 {
		return SharedDataInfo{}, status.Errorf(codes.InvalidArgument,
			"gridd: %s: level (%d) and ttl (%v) must not be negative", op, level, ttl)
	}
	reqID := newRequestID()
	var info *griddpb.SharedDataInfo
	err := c.cache(ctx, op, len(data), func(ctx context.Context, cc griddpb.CacheClient) error {
		st, err := method(cc, ctx)
		if err != nil {
			return err
		}
		h := &griddpb.SharedDataHeader{SessionId: session, UpdateLevel: level, TtlMs: ttl.Milliseconds(),
			RequestId: reqID}
		info, err = shared.Upload(st, h, data)
		return err
	})
	if err != nil {
		return SharedDataInfo{}, err
	}
	return infoOf(info), nil
}

// GetSharedData returns a level of session's shared data from the central
// cache (0 = the latest) and its description. A level above the latest is
// FailedPrecondition; a level no longer kept, or a session without shared
// data, is NotFound. The bytes are checked against their SHA-256.
func (c *Client) GetSharedData(ctx context.Context, session string, level int64) ([]byte, SharedDataInfo, error) {
	op := "get shared data of session " + session
	if session == "" || level < 0 {
		return nil, SharedDataInfo{}, status.Errorf(codes.InvalidArgument,
			"gridd: %s: a session id and a level >= 0 are needed (level %d)", op, level)
	}
	var h *griddpb.SharedDataHeader
	var data []byte
	o := c.callOptions()
	// The size is unknown before the header: instead of a deadline for the
	// whole transfer, an attempt ends when the node sends nothing for the
	// call timeout.
	o.Timeout = 0
	err := c.pool.Call(ctx, op, o, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		h, data, err = shared.Get(ctx, griddpb.NewCacheClient(cc),
			&griddpb.GetSharedDataRequest{SessionId: session, UpdateLevel: level}, c.opts.callTimeout, nil)
		return err
	})
	if err != nil {
		return nil, SharedDataInfo{}, err
	}
	return data, SharedDataInfo{SessionID: h.GetSessionId(), Level: h.GetUpdateLevel(), Size: h.GetSize(),
		SHA256: h.GetSha256(), Expires: expires(h.GetExpiresUnixMs())}, nil
}

func expires(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// DeleteSharedData deletes every level of session's shared data and
// reports whether there was any. Closing a session does it too.
func (c *Client) DeleteSharedData(ctx context.Context, session string) (bool, error) {
	op := "delete shared data of session " + session
	if session == "" {
		return false, status.Errorf(codes.InvalidArgument, "gridd: %s: no session id", op)
	}
	req := &griddpb.DeleteSharedDataRequest{RequestId: newRequestID(), SessionId: session}
	var resp *griddpb.DeleteSharedDataResponse
	err := c.cache(ctx, op, 0, func(ctx context.Context, cc griddpb.CacheClient) error {
		var err error
		resp, err = cc.DeleteSharedData(ctx, req)
		return err
	})
	return resp.GetDeleted(), err
}
