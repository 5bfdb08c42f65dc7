// Package shared moves shared data over the Cache service's streams for the
// client and worker SDKs: uploads cut into chunks, downloads reassembled
// into one buffer and checked against their SHA-256.
package shared

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
)

// ChunkSize is the payload of one stream message: the API's limit.
const ChunkSize = 1 << 20

// Upload sends h and data on st in chunks and returns the server's answer.
// It fills in h's size and SHA-256, so that the server refuses an oversized
// payload before taking it and detects one damaged on the way.
func Upload(st grpc.ClientStreamingClient[griddpb.SharedDataChunk, griddpb.SharedDataInfo],
	h *griddpb.SharedDataHeader, data []byte) (*griddpb.SharedDataInfo, error) {
	sum := sha256.Sum256(data)
	h.Size = int64(len(data))
	h.Sha256 = sum[:]
	first := true
	for first || len(data) > 0 {
		n := min(len(data), ChunkSize)
		m := &griddpb.SharedDataChunk{Data: data[:n]}
		if first {
			m.Header = h
			first = false
		}
		data = data[n:]
		if err := st.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream early: its status says why.
				_, err = st.CloseAndRecv()
			}
			return nil, err
		}
	}
	return st.CloseAndRecv()
}

// Download reads one level from st: the header, then the data. keep, when
// not nil, sees the header first; if it returns data (the caller holds this
// level already), the rest of the stream is not read and that is returned.
// The caller cancels the stream's context to stop the server sending.
func Download(st grpc.ServerStreamingClient[griddpb.SharedDataChunk],
	keep func(*griddpb.SharedDataHeader) []byte) (*griddpb.SharedDataHeader, []byte, error) {
	first, err := st.Recv()
	if err != nil {
		return nil, nil, err
	}
	h := first.GetHeader()
	if h == nil {
		return nil, nil, status.Error(codes.Internal, "gridd: shared data stream did not start with a header")
	}
	if keep != nil {
		if data := keep(h); data != nil {
			return h, data, nil
		}
	}
	if h.GetSize() < 0 || h.GetSize() > MaxSize {
		return nil, nil, status.Errorf(codes.Internal, "gridd: shared data header announces %d bytes", h.GetSize())
	}
	buf := bytes.NewBuffer(make([]byte, 0, h.GetSize()))
	buf.Write(first.GetData())
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		buf.Write(m.GetData())
		if int64(buf.Len()) > h.GetSize() {
			return nil, nil, status.Errorf(codes.DataLoss,
				"gridd: shared data of session %s level %d: more bytes than the %d announced",
				h.GetSessionId(), h.GetUpdateLevel(), h.GetSize())
		}
	}
	data := buf.Bytes()
	if int64(len(data)) != h.GetSize() {
		return nil, nil, status.Errorf(codes.DataLoss,
			"gridd: shared data of session %s level %d: got %d bytes, %d announced",
			h.GetSessionId(), h.GetUpdateLevel(), len(data), h.GetSize())
	}
	if err := Verify(h, data); err != nil {
		return nil, nil, err
	}
	return h, data, nil
}

// MaxSize bounds what a download may announce, so that a corrupt header
// cannot make the SDK allocate without limit.
const MaxSize = 4 << 30

// Verify checks data against the header's SHA-256.
func Verify(h *griddpb.SharedDataHeader, data []byte) error {
	sum := sha256.Sum256(data)
	if !bytes.Equal(sum[:], h.GetSha256()) {
		return status.Errorf(codes.DataLoss,
			"gridd: shared data of session %s level %d: SHA-256 mismatch (got %x, header says %x)",
			h.GetSessionId(), h.GetUpdateLevel(), sum[:], h.GetSha256())
	}
	return nil
}

// Get downloads a level with a Cache client; see Download for keep. When
// idle > 0 and the server sends nothing for that long, the download is
// abandoned with Unavailable (retryable): a paused or hung node keeps its
// connection open, and a deadline for the whole transfer would have to
// allow for the largest payload. Its errors keep their gRPC status and do
// not repeat the request: callers say which session and level they asked
// for.
func Get(ctx context.Context, c griddpb.CacheClient, req *griddpb.GetSharedDataRequest, idle time.Duration,
	keep func(*griddpb.SharedDataHeader) []byte) (*griddpb.SharedDataHeader, []byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // also stops the server's sending when keep took a held level
	var stalled atomic.Bool
	var t *time.Timer
	if idle > 0 {
		t = time.AfterFunc(idle, func() { stalled.Store(true); cancel() })
		defer t.Stop()
	}
	st, err := c.GetSharedData(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	h, data, err := Download(watched{st, t, idle}, keep)
	if err != nil && stalled.Load() {
		return nil, nil, status.Errorf(codes.Unavailable, "the cache sent nothing for %v (node paused or hung?): %v",
			idle, err)
	}
	return h, data, err
}

// watched pushes the idle timer back on every message received.
type watched struct {
	grpc.ServerStreamingClient[griddpb.SharedDataChunk]
	t    *time.Timer
	idle time.Duration
}

func (w watched) Recv() (*griddpb.SharedDataChunk, error) {
	m, err := w.ServerStreamingClient.Recv()
	if err == nil && w.t != nil {
		w.t.Reset(w.idle)
	}
	return m, err
}
