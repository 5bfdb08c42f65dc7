package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/jepsen/history"
	"github.com/gridd/gridd/sdk/client"
)

// Processes of the shared-data workload in the history.
const (
	sharedWriterProcess = 2000
	sharedReaderProcess = 2001 // and up
)

// errNoCache: the cluster does not serve the Cache service.
var errNoCache = errors.New("the cluster has no Cache service (Unimplemented)")

// sharedWorkload is the shared-data workload: one writer stores ever higher
// levels of one session's shared data through the central cache, each
// level with its own bytes (now and then several chunks' worth), while
// readers get the latest level or exact levels around the newest. The
// checker verifies that a reader never sees the latest level go backwards
// and that every read returns the bytes written for its level.
type sharedWorkload struct {
	rec     *history.Recorder
	log     *slog.Logger
	session string
	clients []*client.Client // [0] the writer's, then one per reader
	written atomic.Int64     // the highest level the writer attempted
}

func newSharedWorkload(ctx context.Context, addrs []string, readers int, rec *history.Recorder,
	sdkLog, log *slog.Logger) (*sharedWorkload, error) {
	w := &sharedWorkload{rec: rec, log: log}
	for range 1 + readers {
		c, err := client.Dial(ctx, addrs, client.WithLogger(sdkLog), client.WithCallTimeout(10*time.Second))
		if err != nil {
			w.close()
			return nil, fmt.Errorf("shared data: dial: %w", err)
		}
		w.clients = append(w.clients, c)
	}
	// A session of its own, which stays open: closing it would delete the
	// data the readers read.
	s, err := w.clients[0].CreateSession(ctx, nil, client.WithApp("jepsen-shared-data"))
	if err != nil {
		w.close()
		return nil, fmt.Errorf("shared data: create session: %w", err)
	}
	w.session = s.ID()
	_ = s.Detach()
	_, _, err = w.clients[0].GetSharedData(ctx, w.session, 0)
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.FailedPrecondition:
		return w, nil
	case codes.Unimplemented:
		w.close()
		return nil, errNoCache
	}
	w.close()
	return nil, fmt.Errorf("shared data: probe the Cache service: %w", err)
}

func (w *sharedWorkload) close() {
	for _, c := range w.clients {
		_ = c.Close()
	}
}

// levelBytes returns level's content: random bytes, usually a few KiB,
// every fifth level over two 1 MiB chunks.
func levelBytes(rng *rand.Rand, level int64) []byte {
	n := 1 + rng.IntN(64<<10)
	if level%5 == 0 {
		n = 2<<20 + rng.IntN(1<<20)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// writeLoop stores level 1 with Set (the same bytes on every try, until it
// succeeds or the session turns out to have data), then levels 2, 3, ...
// with Update, each level tried once.
func (w *sharedWorkload) writeLoop(ctx context.Context, rng *rand.Rand) {
	c := w.clients[0]
	first := levelBytes(rng, 1)
	set := false
	level := int64(1)
	for ctx.Err() == nil {
		data := first
		if set {
			level++
			data = levelBytes(rng, level)
		}
		w.written.Store(level)
		v := history.Value{Session: w.session, Level: level, Digest: digest(data)}
		w.rec.Add(sharedWriterProcess, history.Invoke, history.SharedWrite, v)
		// Its own deadline past the end of the load, so the last write
		// learns its outcome.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		var err error
		if set {
			_, err = c.UpdateSharedData(octx, w.session, level, data, 0)
		} else {
			_, err = c.SetSharedData(octx, w.session, level, data, 0)
		}
		cancel()
		ans := history.Value{Session: w.session, Level: level}
		switch {
		case err == nil:
			set = true
			w.rec.Add(sharedWriterProcess, history.OK, history.SharedWrite, ans)
		case !set && status.Code(err) == codes.AlreadyExists:
			// An earlier try of this Set, with these bytes, was applied:
			// the level exists, though this call did not write it.
			set = true
			ans.Code, ans.Error = status.Code(err).String(), err.Error()
			w.rec.Add(sharedWriterProcess, history.Info, history.SharedWrite, ans)
		case definite(err):
			ans.Code, ans.Error = status.Code(err).String(), err.Error()
			w.rec.Add(sharedWriterProcess, history.Fail, history.SharedWrite, ans)
		default:
			ans.Code, ans.Error = status.Code(err).String(), err.Error()
			w.rec.Add(sharedWriterProcess, history.Info, history.SharedWrite, ans)
		}
		pause(ctx, time.Duration(100+rng.IntN(200))*time.Millisecond)
	}
}

// readLoop gets the latest level (most of the time) or an exact level near
// the newest written, from one reader's own client.
func (w *sharedWorkload) readLoop(ctx context.Context, reader int, rng *rand.Rand) {
	c := w.clients[1+reader]
	process := sharedReaderProcess + reader
	for ctx.Err() == nil {
		var level int64
		if top := w.written.Load(); top > 0 && rng.IntN(10) < 4 {
			level = max(1, top-2+rng.Int64N(4)) // top-2 .. top+1: kept, newest, not yet written
		}
		w.rec.Add(process, history.Invoke, history.SharedRead, history.Value{Session: w.session, Level: level})
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		data, info, err := c.GetSharedData(octx, w.session, level)
		cancel()
		ans := history.Value{Session: w.session}
		switch {
		case err == nil:
			ans.Level, ans.Digest = info.Level, digest(data)
			w.rec.Add(process, history.OK, history.SharedRead, ans)
		case definite(err):
			ans.Code, ans.Error = status.Code(err).String(), err.Error()
			w.rec.Add(process, history.Fail, history.SharedRead, ans)
		default:
			ans.Code, ans.Error = status.Code(err).String(), err.Error()
			w.rec.Add(process, history.Info, history.SharedRead, ans)
		}
		pause(ctx, time.Duration(20+rng.IntN(80))*time.Millisecond)
	}
}

// start runs the writer and the readers in load until ctx ends.
func (w *sharedWorkload) start(ctx context.Context, load *sync.WaitGroup, rng *rand.Rand) {
	r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	load.Go(func() { w.writeLoop(ctx, r) })
	for i := range len(w.clients) - 1 {
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		load.Go(func() { w.readLoop(ctx, i, r) })
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
