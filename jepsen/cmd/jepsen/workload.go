package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/jepsen/history"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

const poisonPayload = "poison"

// runWorkers runs n in-process SDK workers until ctx ends. Tasks take a
// small random time; poison tasks always fail, so they must dead-letter
// after their attempts.
func runWorkers(ctx context.Context, addrs []string, n int, log *slog.Logger) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := worker.Options{Addrs: addrs, WorkerID: fmt.Sprintf("jepsen-w%d", i), Concurrency: 4,
				Logger: log, DrainTimeout: 5 * time.Second}
			err := worker.Run(ctx, opts, handle)
			if err != nil && ctx.Err() == nil {
				log.Error("worker stopped", "worker", i, "err", err)
			}
		}()
	}
	return &wg
}

// handle is the workers' task handler: a small random delay, or a failure
// for a poison task.
func handle(ctx context.Context, t worker.Task) ([]byte, error) {
	if string(t.Payload) == poisonPayload {
		return nil, errors.New("poison task")
	}
	d := time.Duration(rand.IntN(20)) * time.Millisecond
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return append([]byte("done:"), t.Payload...), nil
}

// queueClient is one submitting client of the queue workload: its own
// SDK client and session, recording submits and deliveries.
type queueClient struct {
	process int
	rec     *history.Recorder
	c       *client.Client
	s       *client.Session
	readers sync.WaitGroup
}

func newQueueClient(ctx context.Context, process int, addrs []string, rec *history.Recorder,
	log *slog.Logger) (*queueClient, error) {
	c, err := client.Dial(ctx, addrs, client.WithLogger(log), client.WithCallTimeout(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("client %d: dial: %w", process, err)
	}
	s, err := c.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 3},
		client.WithApp("jepsen"), client.WithLinger(2*time.Millisecond))
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("client %d: create session: %w", process, err)
	}
	q := &queueClient{process: process, rec: rec, c: c, s: s}
	q.readers.Add(2)
	go func() {
		defer q.readers.Done()
		for r := range s.Results() {
			rec.Add(process, history.OK, history.Result, history.Value{Session: s.ID(), Tasks: []string{r.TaskID}})
		}
	}()
	go func() {
		defer q.readers.Done()
		for d := range s.DeadLetters() {
			rec.Add(process, history.OK, history.DeadLetter, history.Value{Session: s.ID(), Tasks: []string{d.TaskID}})
		}
	}()
	return q, nil
}

// submitLoop submits batches of batch tasks every interval until ctx ends.
// A submit that failed with a definite rejection is recorded fail; one cut
// short by a timeout or an unavailable cluster is info (unknown).
func (q *queueClient) submitLoop(ctx context.Context, batch int, interval time.Duration, poison float64, rng *rand.Rand) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tasks := make([]client.Task, batch)
		v := history.Value{Session: q.s.ID()}
		for i := range tasks {
			id := fmt.Sprintf("c%d-%d-%d", q.process, n, i)
			payload := []byte(id)
			if rng.Float64() < poison {
				payload = []byte(poisonPayload)
				v.Poison = append(v.Poison, id)
			}
			tasks[i] = client.Task{ID: id, Payload: payload}
			v.Tasks = append(v.Tasks, id)
		}
		q.rec.Add(q.process, history.Invoke, history.Submit, v)
		// The submit keeps its own deadline past the end of the workload, so
		// the last batches learn their outcome instead of all ending unknown.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		_, err := q.s.Submit(sctx, tasks)
		cancel()
		switch {
		case err == nil:
			q.rec.Add(q.process, history.OK, history.Submit, history.Value{Session: q.s.ID()})
		case definite(err):
			q.rec.Add(q.process, history.Fail, history.Submit, history.Value{Session: q.s.ID(),
				Code: status.Code(err).String(), Error: err.Error()})
		default:
			q.rec.Add(q.process, history.Info, history.Submit, history.Value{Session: q.s.ID(),
				Code: status.Code(err).String(), Error: err.Error()})
		}
	}
}

// definite reports whether err certainly means the operation did not take
// effect: a business rejection, not a timeout or a lost leader.
func definite(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// finish records the wire repeats the SDK dropped and detaches (the
// session stays open: closing it would be one more write to fail).
func (q *queueClient) finish() {
	st := q.s.Stats()
	q.rec.Add(q.process, history.OK, history.Repeats, history.Value{Session: q.s.ID(),
		Count: int(st.ResultRepeats + st.DeadLetterRepeats)})
	_ = q.c.Close()
	q.readers.Wait()
}

// sessionsWorker is one process of the sessions workload: it creates,
// updates, reads and closes sessions from a small, slowly moving window
// of ids, so several processes often work on the same session at once.
type sessionsWorker struct {
	process int
	rec     *history.Recorder
	conns   []*grpc.ClientConn
	prefix  string
	start   time.Time
	rng     *rand.Rand
}

func dialAll(addrs []string) ([]*grpc.ClientConn, error) {
	var conns []*grpc.ClientConn
	for _, a := range addrs {
		cc, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("dial %s: %w", a, err)
		}
		conns = append(conns, cc)
	}
	return conns, nil
}

// call runs fn against nodes in turn, with the same request (and so the same
// idempotency key), while they answer Unavailable and ctx lasts.
func (w *sessionsWorker) call(ctx context.Context, fn func(context.Context, griddpb.QueueClient) error) error {
	i := w.rng.IntN(len(w.conns))
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := fn(actx, griddpb.NewQueueClient(w.conns[i%len(w.conns)]))
		cancel()
		if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		i++
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

func (w *sessionsWorker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		// Ids move on every 15 s so closed sessions do not pile up.
		gen := int(time.Since(w.start) / (15 * time.Second))
		id := fmt.Sprintf("%s-%d", w.prefix, gen*3+w.rng.IntN(5))
		prio := int32(1 + w.rng.IntN(10))
		var f string
		switch r := w.rng.IntN(20); {
		case r < 4:
			f = history.Create
		case r < 10:
			f = history.Update
		case r < 19:
			f = history.Get
		default:
			f = history.Close
		}
		v := history.Value{Session: id}
		if f == history.Create || f == history.Update {
			v.Priority = prio
		}
		w.rec.Add(w.process, history.Invoke, f, v)
		reqID := ulid.Make().String()
		var got *griddpb.Session
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := w.call(octx, func(ctx context.Context, q griddpb.QueueClient) error {
			var err error
			switch f {
			case history.Create:
				got, err = q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: reqID, SessionId: id,
					App: "jepsen-sessions", Attributes: &griddpb.SessionAttributes{Priority: prio}})
			case history.Update:
				got, err = q.UpdateSession(ctx, &griddpb.UpdateSessionRequest{RequestId: reqID, SessionId: id,
					Update: &griddpb.SessionUpdate{Priority: &prio}})
			case history.Get:
				got, err = q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: id})
			case history.Close:
				got, err = q.CloseSession(ctx, &griddpb.CloseSessionRequest{RequestId: reqID, SessionId: id})
			}
			return err
		})
		cancel()
		ans := history.Value{Session: id}
		switch {
		case err == nil:
			ans.Priority = got.GetAttributes().GetPriority()
			ans.State = history.StateOpen
			if got.GetState() == griddpb.SessionState_SESSION_STATE_CLOSED {
				ans.State = history.StateClosed
			}
			w.rec.Add(w.process, history.OK, f, ans)
		case definite(err):
			ans.Code, ans.Error = status.Code(err).String(), err.Error()
			w.rec.Add(w.process, history.Fail, f, ans)
		default:
			ans.Code, ans.Error = status.Code(err).String(), err.Error()
			w.rec.Add(w.process, history.Info, f, ans)
		}
		select {
		case <-time.After(time.Duration(20+w.rng.IntN(60)) * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
