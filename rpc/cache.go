package rpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
)

// CacheLimits configure the central cache (the Cache service).
type CacheLimits struct {
	// MaxBytes bounds one level's payload; default 256 MiB.
	MaxBytes int64
	// MaxTTL caps a level's time to live; default 7 days.
	MaxTTL time.Duration
	// DefaultTTL applies when an upload asks for none; default 24 h,
	// capped by MaxTTL.
	DefaultTTL time.Duration
	// KeepLevels is how many levels a session keeps, the latest included,
	// so that workers still on an older level can finish; default 2.
	KeepLevels int
	// UploadTimeout: an upload that received nothing for this long is
	// aborted by the leader's sweeper (its client or leader died); default
	// 1 min.
	UploadTimeout time.Duration
	// InFlight is how many chunk entries an upload keeps proposed before
	// it stops reading the stream (backpressure); default 4.
	InFlight int
}

// Defaults of the central cache.
const (
	DefaultMaxSharedDataBytes = 256 << 20
	DefaultMaxSharedDataTTL   = 7 * 24 * time.Hour
	DefaultSharedDataTTL      = 24 * time.Hour
	DefaultUploadTimeout      = time.Minute
)

func (l CacheLimits) withDefaults() CacheLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxSharedDataBytes
	}
	if l.MaxTTL <= 0 {
		l.MaxTTL = DefaultMaxSharedDataTTL
	}
	if l.DefaultTTL <= 0 {
		l.DefaultTTL = DefaultSharedDataTTL
	}
	l.DefaultTTL = min(l.DefaultTTL, l.MaxTTL)
	if l.KeepLevels <= 0 {
		l.KeepLevels = fsm.DefaultKeepLevels
	}
	if l.UploadTimeout <= 0 {
		l.UploadTimeout = DefaultUploadTimeout
	}
	if l.InFlight <= 0 {
		l.InFlight = 4
	}
	return l
}

// ValidateSharedHeader checks the header that opens an upload, before any
// data is taken.
func ValidateSharedHeader(l CacheLimits, h *griddpb.SharedDataHeader) error {
	l = l.withDefaults()
	switch {
	case h == nil:
		return invalidf("the first message of an upload must carry a header")
	case h.UpdateLevel < 0:
		return invalidf("update_level %d is negative", h.UpdateLevel)
	case h.TtlMs < 0:
		return invalidf("ttl_ms %d is negative", h.TtlMs)
	case h.Size < 0:
		return invalidf("size %d is negative", h.Size)
	case h.Size > l.MaxBytes:
		return invalidf("size %d bytes is over this cluster's limit of %d bytes (--max-shared-data-bytes)",
			h.Size, l.MaxBytes)
	case len(h.Sha256) != 0 && len(h.Sha256) != sha256.Size:
		return invalidf("sha256 is %d bytes; want %d or none", len(h.Sha256), sha256.Size)
	case len(h.RequestId) > fsm.MaxTaskIDLen || !utf8.ValidString(h.RequestId):
		return invalidf("request_id must be valid UTF-8 of at most %d bytes", fsm.MaxTaskIDLen)
	case h.ExpiresUnixMs != 0:
		return invalidf("expires_unix_ms is set by the server; send ttl_ms instead")
	}
	return validateID("session", h.SessionId)
}

// ValidateSharedChunk checks a message of an upload stream after the
// first, or the data of the first: received bytes came before it, out of
// the declared size.
func ValidateSharedChunk(m *griddpb.SharedDataChunk, first bool, received, size int64) error {
	switch {
	case !first && m.GetHeader() != nil:
		return invalidf("a header after the first message of an upload (at byte %d)", received)
	case len(m.GetData()) > fsm.MaxSharedChunk:
		return invalidf("chunk of %d bytes at byte %d; chunks are at most %d bytes", len(m.GetData()), received,
			fsm.MaxSharedChunk)
	case int64(len(m.GetData())) > size-received:
		return invalidf("chunk of %d bytes at byte %d overruns the declared size of %d bytes",
			len(m.GetData()), received, size)
	}
	return nil
}

// cacheServer implements the Cache service (the central cache).
type cacheServer struct {
	griddpb.UnimplementedCacheServer
	s   *Server
	lim CacheLimits
}

// RegisterCache adds the Cache service to g; Register does it for the
// node's main listener, the server calls it for --cache-addr.
func (s *Server) RegisterCache(g *grpc.Server) {
	griddpb.RegisterCacheServer(g, s.cache)
}

func (c *cacheServer) SetSharedData(stream grpc.ClientStreamingServer[griddpb.SharedDataChunk, griddpb.SharedDataInfo]) error {
	return c.upload(stream, true)
}

func (c *cacheServer) UpdateSharedData(stream grpc.ClientStreamingServer[griddpb.SharedDataChunk, griddpb.SharedDataInfo]) error {
	return c.upload(stream, false)
}

type uploadStream = grpc.ClientStreamingServer[griddpb.SharedDataChunk, griddpb.SharedDataInfo]

func (c *cacheServer) upload(stream uploadStream, set bool) error {
	ctx := stream.Context()
	conn, err := c.s.fwd.leaderConn(ctx)
	if err != nil {
		return err
	}
	if conn != nil {
		return c.forwardUpload(stream, conn, set)
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return toStatus(invalidf("empty upload stream: the first message must carry a header"))
	}
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if err := ValidateSharedHeader(c.lim, h); err != nil {
		return toStatus(err)
	}
	if err := c.s.checkApp(ctx, h.SessionId); err != nil {
		return err
	}
	if h.RequestId != "" {
		// A retry of an upload that already landed: answer before taking
		// the data again.
		if r, ok := c.s.fsm.Answer(h.RequestId); ok {
			return c.answer(stream, h, r)
		}
	}
	if err := c.precheck(h, set); err != nil {
		return toStatus(err)
	}
	up := &uploader{c: c, ctx: ctx, h: h, set: set, id: c.s.newID(), sum: sha256.New()}
	err = up.run(stream, first)
	if err != nil {
		up.abort()
		return toStatus(err)
	}
	return nil
}

// precheck refuses an upload the commit would refuse, before its data is
// taken; the state machine checks again at commit.
func (c *cacheServer) precheck(h *griddpb.SharedDataHeader, set bool) error {
	last, has, err := c.s.fsm.SharedLast(h.SessionId)
	switch {
	case err != nil:
		return err
	case set && has:
		return status.Errorf(codes.AlreadyExists, "session %q has shared data (level %d); use UpdateSharedData",
			h.SessionId, last)
	case !set && !has:
		return status.Errorf(codes.NotFound, "session %q has no shared data to update; use SetSharedData", h.SessionId)
	case h.UpdateLevel != 0 && h.UpdateLevel <= last:
		return invalidf("update_level %d is not above the current level %d", h.UpdateLevel, last)
	}
	return nil
}

func (c *cacheServer) answer(stream uploadStream, h *griddpb.SharedDataHeader, r fsm.Response) error {
	if r.Err != nil {
		return toStatus(r.Err)
	}
	l := r.Shared
	if l == nil {
		return status.Errorf(codes.InvalidArgument, "request_id %q was already used by a request that is not an upload",
			h.RequestId)
	}
	return stream.SendAndClose(&griddpb.SharedDataInfo{SessionId: l.Session, UpdateLevel: l.Level,
		Size: int64(len(l.Data)), Sha256: l.SHA256, ExpiresUnixMs: l.ExpiresUnixMs})
}

// uploader proposes one upload's chunks as they arrive, a few in flight,
// then its commit.
type uploader struct {
	c       *cacheServer
	ctx     context.Context
	h       *griddpb.SharedDataHeader
	set     bool
	id      string
	sum     hash.Hash
	off     int64
	pending []func() (fsm.Response, error)
	started bool // a chunk was proposed: an abort may be needed
}

func (u *uploader) run(stream uploadStream, first *griddpb.SharedDataChunk) error {
	m := first
	for {
		if err := ValidateSharedChunk(m, m == first, u.off, u.h.Size); err != nil {
			return err
		}
		if err := u.chunk(m.GetData()); err != nil {
			return err
		}
		var err error
		m, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if u.off != u.h.Size {
		return invalidf("the upload stream ended after %d of the %d bytes its header declared", u.off, u.h.Size)
	}
	sum := u.sum.Sum(nil)
	if len(u.h.Sha256) != 0 && !bytes.Equal(sum, u.h.Sha256) {
		return invalidf("sha256 mismatch: the data hashes to %x, the header says %x", sum, u.h.Sha256)
	}
	lim := u.c.lim
	ttl := lim.DefaultTTL
	if u.h.TtlMs > 0 {
		ttl = min(time.Duration(u.h.TtlMs)*time.Millisecond, lim.MaxTTL)
	}
	// The commit follows the chunks still in flight without waiting for
	// them: raft keeps the order, and a commit after a failed chunk fails
	// in the state machine. A small upload then costs one round of
	// replication instead of two.
	now := time.Now()
	waitCommit, err := u.c.s.node.ProposeAsync(u.ctx, &fsmpb.Command{NowUnixMs: now.UnixMilli(), RequestId: u.h.RequestId,
		Cmd: &fsmpb.Command_SharedDataCommit{SharedDataCommit: &fsmpb.SharedDataCommit{
			SessionId: u.h.SessionId, UploadId: u.id, Set: u.set, Level: u.h.UpdateLevel, Size: u.h.Size,
			Sha256: sum, ExpiresUnixMs: now.Add(ttl).UnixMilli(), KeepLevels: int32(lim.KeepLevels),
		}}})
	chunkErr := u.drain()
	if err != nil {
		return err
	}
	resp, err := waitCommit()
	if err != nil {
		// Outcome unknown: the abort that follows is harmless if the
		// commit did land, and the client's retry with its request_id
		// gets the commit's answer.
		return err
	}
	u.started = false // the commit finished the upload, whatever its answer
	if resp.Err != nil && chunkErr != nil {
		return chunkErr // the cause; the commit only saw its effect
	}
	if resp.Err != nil {
		return resp.Err
	}
	return u.c.answer(stream, u.h, resp)
}

// chunk proposes one piece of data, waiting for the oldest in flight when
// the window is full.
func (u *uploader) chunk(data []byte) error {
	if len(data) == 0 {
		return nil // an empty payload needs no chunk at all
	}
	for len(u.pending) >= u.c.lim.InFlight {
		if err := u.waitOne(); err != nil {
			return err
		}
	}
	u.sum.Write(data)
	wait, err := u.c.s.node.ProposeAsync(u.ctx, &fsmpb.Command{NowUnixMs: time.Now().UnixMilli(),
		Cmd: &fsmpb.Command_SharedDataChunk{SharedDataChunk: &fsmpb.SharedDataChunk{
			SessionId: u.h.SessionId, UploadId: u.id, Size: u.h.Size, Offset: u.off, Data: data,
		}}})
	if err != nil {
		return err
	}
	u.started = true
	u.pending = append(u.pending, wait)
	u.off += int64(len(data))
	return nil
}

func (u *uploader) waitOne() error {
	wait := u.pending[0]
	u.pending = u.pending[1:]
	resp, err := wait()
	if err == nil {
		err = resp.Err
	}
	return err
}

// drain waits for every chunk in flight; the first error wins.
func (u *uploader) drain() error {
	var first error
	for len(u.pending) > 0 {
		if err := u.waitOne(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// abort drops an unfinished upload at once instead of leaving its buffer
// to the sweeper. Best effort: if it fails, the sweeper aborts it later.
func (u *uploader) abort() {
	_ = u.drain()
	if !u.started {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := u.c.s.propose(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataAbort{
		SharedDataAbort: &fsmpb.SharedDataAbort{SessionId: u.h.SessionId, UploadId: u.id},
	}}); err != nil {
		u.c.s.log.Debug("abort of a failed upload not proposed; the sweeper will", "session", u.h.SessionId, "err", err)
	}
}

// forwardUpload pipes an upload from a follower to the leader.
func (c *cacheServer) forwardUpload(stream uploadStream, conn *grpc.ClientConn, set bool) error {
	ctx, cancel := context.WithCancel(c.s.fwd.outgoing(stream.Context()))
	defer cancel()
	cc := griddpb.NewCacheClient(conn)
	var (
		up  grpc.ClientStreamingClient[griddpb.SharedDataChunk, griddpb.SharedDataInfo]
		err error
	)
	if set {
		up, err = cc.SetSharedData(ctx)
	} else {
		up, err = cc.UpdateSharedData(ctx)
	}
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err // cancels the leader's stream: the upload is aborted
		}
		if err := up.Send(m); err != nil {
			break // the leader ended the stream; its status comes below
		}
	}
	resp, err := up.CloseAndRecv()
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

func (c *cacheServer) GetSharedData(req *griddpb.GetSharedDataRequest, stream grpc.ServerStreamingServer[griddpb.SharedDataChunk]) error {
	if err := validateID("session", req.SessionId); err != nil {
		return toStatus(err)
	}
	if req.UpdateLevel < 0 {
		return toStatus(invalidf("update_level %d is negative", req.UpdateLevel))
	}
	ctx := stream.Context()
	if err := c.s.checkApp(ctx, req.SessionId); err != nil {
		return err
	}
	// An exact level never changes once written, so any node that has it
	// may serve it; the latest must come from the leader, or a reader
	// could see levels go backwards when it moves between nodes.
	if req.UpdateLevel > 0 || req.LocalOnly {
		l, err := c.s.fsm.SharedData(req.SessionId, req.UpdateLevel)
		if err == nil {
			return sendLevel(stream, l)
		}
		if req.LocalOnly {
			return toStatus(err)
		}
	}
	conn, err := c.s.fwd.leaderConn(ctx)
	if err != nil {
		return err
	}
	if conn != nil {
		return forwardGet(c.s.fwd.outgoing(ctx), conn, req, stream)
	}
	if req.UpdateLevel == 0 {
		if err := c.s.node.VerifyLeader(ctx); err != nil {
			return toStatus(err)
		}
	}
	l, err := c.s.fsm.SharedData(req.SessionId, req.UpdateLevel)
	if err != nil {
		return toStatus(err)
	}
	return sendLevel(stream, l)
}

// sendLevel streams a level: the header with the first chunk, then the
// rest, each a slice of the state machine's buffer (never a copy of the
// whole payload).
func sendLevel(stream grpc.ServerStreamingServer[griddpb.SharedDataChunk], l fsm.SharedLevel) error {
	data := l.Data
	n := min(len(data), fsm.MaxSharedChunk)
	if err := stream.Send(&griddpb.SharedDataChunk{Header: &griddpb.SharedDataHeader{
		SessionId: l.Session, UpdateLevel: l.Level, Size: int64(len(data)), Sha256: l.SHA256,
		ExpiresUnixMs: l.ExpiresUnixMs,
	}, Data: data[:n]}); err != nil {
		return err
	}
	for data = data[n:]; len(data) > 0; data = data[n:] {
		n = min(len(data), fsm.MaxSharedChunk)
		if err := stream.Send(&griddpb.SharedDataChunk{Data: data[:n]}); err != nil {
			return err
		}
	}
	return nil
}

func forwardGet(ctx context.Context, conn *grpc.ClientConn, req *griddpb.GetSharedDataRequest,
	stream grpc.ServerStreamingServer[griddpb.SharedDataChunk]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	down, err := griddpb.NewCacheClient(conn).GetSharedData(ctx, req)
	if err != nil {
		return err
	}
	for {
		m, err := down.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
}

func (c *cacheServer) DeleteSharedData(ctx context.Context, req *griddpb.DeleteSharedDataRequest) (*griddpb.DeleteSharedDataResponse, error) {
	if conn, err := c.s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewCacheClient(conn).DeleteSharedData(c.s.fwd.outgoing(ctx), req)
	}
	if err := c.s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := validateID("session", req.SessionId); err != nil {
		return nil, toStatus(err)
	}
	resp, err := c.s.propose(ctx, &fsmpb.Command{RequestId: req.RequestId, Cmd: &fsmpb.Command_SharedDataDelete{
		SharedDataDelete: &fsmpb.SharedDataDelete{SessionId: req.SessionId},
	}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &griddpb.DeleteSharedDataResponse{Deleted: resp.SharedDeleted}, nil
}

// SweepSharedData runs on the leader until ctx ends: every interval it
// proposes the expiry of shared data whose TTL passed and the abort of
// uploads that received nothing for UploadTimeout. Expiry is decided here,
// by the leader's clock, and replicated; the state machine reads no clock.
func (s *Server) SweepSharedData(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		exp, stale := s.fsm.SharedSweep(now.UnixMilli(), now.Add(-s.cache.lim.UploadTimeout).UnixMilli())
		for _, e := range exp {
			s.sweepPropose(ctx, "expire", e.Session, &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataExpire{
				SharedDataExpire: &fsmpb.SharedDataExpire{SessionId: e.Session, ExpiresUnixMs: e.ExpiresUnixMs},
			}})
		}
		for _, u := range stale {
			s.sweepPropose(ctx, "abort stale upload", u.Session, &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataAbort{
				SharedDataAbort: &fsmpb.SharedDataAbort{SessionId: u.Session, UploadId: u.UploadID},
			}})
		}
	}
}

func (s *Server) sweepPropose(ctx context.Context, what, session string, cmd *fsmpb.Command) {
	if _, err := s.propose(ctx, cmd); err != nil {
		// The next tick, or the next leader, tries again.
		s.log.Debug("shared data sweep: "+what+" not applied", "session", session, "err", err)
		return
	}
	s.log.Info("shared data sweep: "+what, "session", session)
}
