// Package client is the Go SDK for applications that submit tasks to a gridd
// cluster and collect their results.
//
// A Client discovers the Raft leader among the addresses it is given and
// talks to it directly; when the leader dies it finds the new one and
// retries, with exponential backoff and jitter. A Session submits batches of
// tasks on one long-lived stream and receives each task's result exactly
// once, even when the cluster fails over underneath it.
//
// A leader that stops answering without closing its connections (a paused
// process, a frozen VM) is noticed by the leader watch (WithLeaderWatch):
// a stream with work outstanding that hears nothing for 2 s asks the other
// nodes, and moves to the leader they name if it was elected in a later
// term.
//
// # Usage
//
//	cl, err := client.Dial(ctx, []string{"node1:1337", "node2:1337", "node3:1337"})
//	if err != nil { ... }
//	defer cl.Close()
//	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{Priority: 7})
//	if err != nil { ... }
//	for _, p := range payloads {
//		if err := s.Add(ctx, client.Task{Payload: p}); err != nil { ... } // id generated
//	}
//	if err := s.Flush(ctx); err != nil { ... } // every task durable
//	for r, err := range s.All(ctx) {
//		if err != nil { ... }
//		use(r.TaskID, r.Payload) // each result once
//	}
//
// # Submitting
//
// Submit sends a slice of tasks and returns when they are durable
// (committed to a majority of the nodes); it splits large slices into
// batches (WithMaxBatch). Add queues one task and returns at once; the
// Session groups added tasks into batches itself, and Flush waits until
// everything added is durable. Tasks without an ID get a ULID (NewTaskID):
// Submit writes it back into the slice and returns it in SubmitResult.IDs;
// results carry it.
//
// Batching trades latency for throughput: one batch costs one Raft entry
// and one fsync whatever its size, so full batches move many more tasks per
// second, but a task waiting for its batch to fill waits. Add sends a batch
// when it is full (WithMaxBatch), when its oldest task has waited the
// linger (WithLinger, default 2 ms), or on Flush. In adaptive mode
// (WithAdaptiveBatching, the default) a task added while none of Add's
// batches is in flight leaves at once, and the tasks added while one is in
// flight leave together when it is acknowledged: a lone request pays no
// linger, and under load batches grow to what accumulates during one round
// trip. Turn it off, with a longer linger, for the fullest batches.
//
// # Backpressure
//
// A Session counts the tasks it submitted whose result or dead letter the
// application has not received yet. At WithMaxInflightTasks (default
// 100,000) Submit and Add wait until results are read, or their context
// ends. Read results while submitting, from another goroutine, or bound
// the submission by what you read.
//
// # Results and restarts
//
// Results (a channel) and All (an iterator over the same results) hand
// each result over once; it is acknowledged to the server after it is
// handed over, and the server keeps it until then. A process that stops
// and starts again reopens its session with OpenSession and receives every
// result it had not acknowledged: Detach and Close acknowledge what was
// handed over before they return; after a crash, results handed over in
// the last few milliseconds may come again, since the memory of what was
// delivered lives in the Session value.
//
// # Task states and cancellation
//
// Tasks reports the state of tasks by id: pending, running (with the
// worker's id), failed (waiting for its retry backoff), completed,
// dead-lettered, cancelled, or not found. Cancel cancels tasks by id and
// CancelAll every task of the session without an outcome: they are never
// run again, a worker running one is told to stop, and no result or dead
// letter will come for them, so they stop counting in flight.
//
// # Shared data
//
// SetSharedData, UpdateSharedData, GetSharedData and DeleteSharedData
// store and read a session's shared data in the cluster's central cache:
// bytes with an update level, sent in 1 MiB chunks with their SHA-256;
// writes carry a request id and are retried across failovers. Tasks that
// need it set Task.UseSharedData and Task.SharedDataLevel (0 = the latest
// when the worker fetches it); the worker SDK hands that level to the
// handler.
//
// # Errors
//
// Every error returned by this package carries a gRPC status, so
// status.Code(err) tells what happened: the server's code (InvalidArgument,
// NotFound, FailedPrecondition, ...) when it refused the call, Unavailable
// when no leader could be reached, DeadlineExceeded or Canceled when the
// caller's context ended first (errors.Is(err, context.DeadlineExceeded)
// works too), Canceled with ErrDetached for a stopped session.
package client
