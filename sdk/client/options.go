package client

import (
	"crypto/tls"
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// DefaultCallTimeout bounds each attempt of a unary call.
const DefaultCallTimeout = 10 * time.Second

type options struct {
	apiKey      string
	tls         *tls.Config
	logger      *slog.Logger
	minBackoff  time.Duration
	maxBackoff  time.Duration
	callTimeout time.Duration
	dialOpts    []grpc.DialOption
	// watch is the silence after which a stream's node is suspected (see
	// WithLeaderWatch); 0 means conn.DefaultWatchSilence, < 0 off.
	watch time.Duration
}

// Option configures Dial.
type Option func(*options)

// WithAPIKey sends key in the api_key header of every call and stream.
func WithAPIKey(key string) Option { return func(o *options) { o.apiKey = key } }

// WithTLS enables TLS with cfg; the default is plaintext.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBackoff bounds the wait between retries and reconnections
// (default 50 ms .. 2 s, doubling, jittered).
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = minWait, maxWait }
}

// WithCallTimeout bounds each attempt of a unary call (default 10 s). An
// attempt that times out is retried while the caller's context allows; the
// call as a whole is bounded by the caller's context only.
func WithCallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// WithDialOptions adds gRPC dial options (keepalive, interceptors, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithLeaderWatch sets how long a session's stream with work outstanding
// (batches not acknowledged, or tasks without an outcome yet) may hear
// nothing from its node before the SDK asks the other nodes whether a new
// leader was elected (default 2 s; d < 0 turns the watch off). When one
// names a leader of a later term, the stream is abandoned and reopened on
// the new leader, and unacknowledged batches are resent with the same task
// ids, so nothing is lost or applied twice. This is what gets a client past
// a leader that is paused (SIGSTOP, docker pause, a frozen VM): its TCP
// connections stay up, and without the watch the streams would wait for it
// to resume. A slow node is not abandoned: no other node names a newer
// leader.
func WithLeaderWatch(d time.Duration) Option { return func(o *options) { o.watch = d } }

// SessionOption configures CreateSession and OpenSession.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	id          string
	app         string
	maxBatch    int
	maxBytes    int
	bufferSize  int
	maxInflight int
	linger      time.Duration
	adaptive    bool
}

// DefaultLinger is how long Session.Add lets a task wait for others to
// share its batch, at most.
const DefaultLinger = 2 * time.Millisecond

// WithSessionID asks CreateSession for this session id instead of a
// server-generated one.
func WithSessionID(id string) SessionOption { return func(o *sessionOptions) { o.id = id } }

// WithApp records the application name on the created session.
func WithApp(app string) SessionOption { return func(o *sessionOptions) { o.app = app } }

// WithMaxBatch bounds the tasks and payload bytes Submit puts in one batch;
// a larger Submit is split (defaults 1,000 tasks and 2 MiB, below the
// server's limits of 10,000 tasks and gRPC's 4 MiB message).
func WithMaxBatch(tasks, bytes int) SessionOption {
	return func(o *sessionOptions) { o.maxBatch, o.maxBytes = tasks, bytes }
}

// WithResultBuffer sets the capacity of the Results and DeadLetters
// channels (default 0). A result is acknowledged once it is in the channel,
// so with a buffer, Detach acknowledges up to n results the application has
// not read yet (they stay readable from the closed channel); with none,
// every result not read is left with the server for the next attachment.
// Either way, results the application is slow to read wait in memory, not
// on the stream, so they never hold up submit acknowledgements.
func WithResultBuffer(n int) SessionOption { return func(o *sessionOptions) { o.bufferSize = n } }

// WithMaxInflightTasks bounds the tasks in flight: submitted (Submit or
// Add) by this Session and whose result or dead letter the application has
// not received yet. Submit and Add wait while the bound is reached, until
// results are read or their context ends. The default is
// DefaultMaxInflightTasks; n < 0 removes the bound. A single Submit larger
// than n is let through when nothing else is in flight.
//
// The bound is on ids: resending a task id that is in flight costs nothing
// more. Tasks the server acknowledges as duplicates of tasks submitted
// earlier (for example by a previous process attached to the session) stop
// counting at once when their whole batch was duplicates.
func WithMaxInflightTasks(n int) SessionOption {
	return func(o *sessionOptions) {
		if n == 0 {
			n = DefaultMaxInflightTasks
		}
		o.maxInflight = n
	}
}

// WithLinger sets how long a task given to Session.Add may wait for others
// to fill its batch (default DefaultLinger). A batch leaves when it holds
// WithMaxBatch's tasks or bytes, when its oldest task lingered d, or on
// Flush. d < 0 disables the time limit: batches leave full or on Flush only
// (fixed-size batching).
func WithLinger(d time.Duration) SessionOption {
	return func(o *sessionOptions) {
		if d == 0 {
			d = DefaultLinger
		}
		o.linger = d
	}
}

// WithAdaptiveBatching turns adaptive batching for Session.Add on or off
// (default on). Adaptive: when none of Add's batches is waiting for its
// acknowledgement, a task is sent at once, alone, and the tasks added
// while a batch is in flight are sent together as soon as its
// acknowledgement arrives (or the batch fills, or the linger ends). A
// lone task thus pays no linger (ping-pong latency), and under load the
// batches grow by themselves to what one round trip accumulates. Off: every
// task waits for the batch to fill or for the linger, which gives fewer,
// fuller batches at the price of up to the linger's latency.
func WithAdaptiveBatching(on bool) SessionOption {
	return func(o *sessionOptions) { o.adaptive = on }
}

func sessionDefaults(opts []SessionOption) sessionOptions {
	o := sessionOptions{maxBatch: 1000, maxBytes: 2 << 20, maxInflight: DefaultMaxInflightTasks,
		linger: DefaultLinger, adaptive: true}
	for _, f := range opts {
		f(&o)
	}
	if o.maxBatch <= 0 {
		o.maxBatch = 1000
	}
	if o.maxBytes <= 0 {
		o.maxBytes = 2 << 20
	}
	if o.bufferSize < 0 {
		o.bufferSize = 0
	}
	return o
}
