package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/gridd/gridd/rpc/griddpb"
)

// central reads from the central cache: the Cache service of any gridd node
// (a follower forwards). It tries the addresses in turn, starting with the
// last one that answered, and moves on only while nothing has been read.
type central struct {
	addrs    []string
	conns    []*grpc.ClientConn
	next     atomic.Int64
	retryFor time.Duration
}

func newCentral(addrs []string, opts []grpc.DialOption, retryFor time.Duration) (*central, error) {
	c := &central{addrs: addrs, retryFor: retryFor}
	for _, a := range addrs {
		cc, err := grpc.NewClient(a, opts...)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("central cache address %q: %w", a, err)
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

func (c *central) close() {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
}

// open starts a download and returns it with its first message (the
// header) already read, so a caller sees the central cache's answer
// (NotFound, FailedPrecondition, ...) as the error of open. Cancel ctx to
// abandon the rest of the stream.
//
// While no node answers (a leader election, a rolling restart) it tries
// again for up to retryFor, so readers wait out a failover instead of
// failing.
func (c *central) open(ctx context.Context, req *pb.GetSharedDataRequest) (*pb.SharedDataChunk, pb.Cache_GetSharedDataClient, error) {
	deadline := time.Now().Add(c.retryFor)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		first, stream, err := c.openOnce(ctx, req)
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return first, stream, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
}

func (c *central) openOnce(ctx context.Context, req *pb.GetSharedDataRequest) (*pb.SharedDataChunk, pb.Cache_GetSharedDataClient, error) {
	start := int(c.next.Load())
	var errs []string
	for i := range c.conns {
		n := (start + i) % len(c.conns)
		first, stream, err := openStream(ctx, pb.NewCacheClient(c.conns[n]), req)
		if err == nil || !retryElsewhere(err) || ctx.Err() != nil {
			if err == nil {
				c.next.Store(int64(n))
			}
			return first, stream, err
		}
		errs = append(errs, fmt.Sprintf("%s: %v", c.addrs[n], status.Convert(err).Message()))
	}
	return nil, nil, status.Errorf(codes.Unavailable, "no central cache answered (%s); check --central", strings.Join(errs, "; "))
}

// retryElsewhere tells errors another node may not have: the node is down,
// restarting, or between leaders.
func retryElsewhere(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Internal, codes.Aborted, codes.Unimplemented:
		return true
	}
	return false
}

func openStream(ctx context.Context, cc pb.CacheClient, req *pb.GetSharedDataRequest, opts ...grpc.CallOption) (*pb.SharedDataChunk, pb.Cache_GetSharedDataClient, error) {
	stream, err := cc.GetSharedData(ctx, req, opts...)
	if err != nil {
		return nil, nil, err
	}
	first, err := stream.Recv()
	if err == io.EOF {
		return nil, nil, status.Error(codes.Internal, "the cache closed the download before its header")
	}
	if err != nil {
		return nil, nil, err
	}
	if first.GetHeader() == nil {
		return nil, nil, status.Error(codes.Internal, "the first message of a download has no header")
	}
	return first, stream, nil
}

// errTooLarge says a level does not fit in this cache: it is streamed
// through to each reader instead of being kept.
var errTooLarge = errors.New("larger than the node cache")

// readEntry reads a whole download into one entry, checking what the
// header promised (level, size, digest). maxCost bounds what is kept.
func readEntry(session string, first *pb.SharedDataChunk, stream pb.Cache_GetSharedDataClient, maxCost int64) (*entry, error) {
	h := first.GetHeader()
	switch {
	case h.GetSessionId() != "" && h.GetSessionId() != session:
		return nil, status.Errorf(codes.Internal, "upstream answered session %q for %q", h.GetSessionId(), session)
	case h.GetUpdateLevel() <= 0:
		return nil, status.Errorf(codes.Internal, "upstream answered level %d for session %q", h.GetUpdateLevel(), session)
	case h.GetSize() < 0:
		return nil, status.Errorf(codes.Internal, "upstream announced a negative size %d", h.GetSize())
	}
	e := &entry{key: key{session, h.GetUpdateLevel()}, sha256: h.GetSha256(), expires: h.GetExpiresUnixMs()}
	if int64(len(session)+len(e.sha256))+entryOverhead+h.GetSize() > maxCost {
		return e, errTooLarge
	}
	buf := bytes.NewBuffer(make([]byte, 0, h.GetSize()))
	msg := first
	for {
		if int64(buf.Len()+len(msg.GetData())) > h.GetSize() {
			return nil, status.Errorf(codes.Internal, "upstream sent more than the %d bytes it announced for %q level %d",
				h.GetSize(), session, e.level)
		}
		buf.Write(msg.GetData())
		var err error
		msg, err = stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(buf.Len()) != h.GetSize() {
		return nil, status.Errorf(codes.Internal, "upstream sent %d of the %d bytes it announced for %q level %d",
			buf.Len(), h.GetSize(), session, e.level)
	}
	e.data = buf.Bytes()
	if len(e.sha256) > 0 {
		sum := sha256.Sum256(e.data)
		if !bytes.Equal(sum[:], e.sha256) {
			return nil, status.Errorf(codes.DataLoss, "the SHA-256 of %q level %d does not match its header; not cached", session, e.level)
		}
	}
	return e, nil
}

// chunkSize bounds the data of one download message (the API's limit).
const chunkSize = 1 << 20

// header is what a download of e opens with.
func (e *entry) header() *pb.SharedDataHeader {
	return &pb.SharedDataHeader{SessionId: e.session, UpdateLevel: e.level, Size: int64(len(e.data)),
		Sha256: e.sha256, ExpiresUnixMs: e.expires}
}

// sendEntry streams e: the header with the first chunk, then the rest.
func sendEntry(e *entry, send func(*pb.SharedDataChunk) error) error {
	data := e.data
	msg := &pb.SharedDataChunk{Header: e.header()}
	for {
		n := min(len(data), chunkSize)
		msg.Data = data[:n]
		data = data[n:]
		if err := send(msg); err != nil {
			return err
		}
		if len(data) == 0 {
			return nil
		}
		msg = &pb.SharedDataChunk{}
	}
}

// relay forwards the rest of a download as it arrives, for a level too
// large to keep. first has been read already.
func relay(first *pb.SharedDataChunk, stream pb.Cache_GetSharedDataClient, send func(*pb.SharedDataChunk) error) (int64, error) {
	var n int64
	for msg := first; ; {
		n += int64(len(msg.GetData()))
		if err := send(msg); err != nil {
			return n, err
		}
		var err error
		msg, err = stream.Recv()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// conns is a lazily filled set of client connections to peers, by address.
type conns struct {
	opts []grpc.DialOption
	mu   sync.Mutex
	m    map[string]*grpc.ClientConn
}

func (c *conns) get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.m[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.opts...)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = make(map[string]*grpc.ClientConn)
	}
	c.m[addr] = cc
	return cc, nil
}

// retain closes the connections to peers no longer live.
func (c *conns) retain(live map[string]bool) {
	c.mu.Lock()
	var gone []*grpc.ClientConn
	for addr, cc := range c.m {
		if !live[addr] {
			gone = append(gone, cc)
			delete(c.m, addr)
		}
	}
	c.mu.Unlock()
	for _, cc := range gone {
		_ = cc.Close()
	}
}

func (c *conns) closeAll() {
	c.mu.Lock()
	m := c.m
	c.m = nil
	c.mu.Unlock()
	for _, cc := range m {
		_ = cc.Close()
	}
}
