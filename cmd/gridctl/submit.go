package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
)

// exitError ends gridctl with code after printing its message: submit uses
// 2 for "ran, but some tasks were dead-lettered", which a script must be
// able to tell from 1, "could not run".
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// maxLine bounds one input line: a payload (4 MiB by default on the server)
// plus JSON's escaping.
const maxLine = 16 << 20

type submitFlags struct {
	session string
	app     string
	create  updateFlags // the session attributes, when submit creates it
	json    bool
	batch   int
	ordered bool
	quiet   bool
	close   bool
}

const submitLong = `Submit tasks read from FILE (or standard input when FILE is - or absent) and
print their results as they arrive.

Each line is one task: its id is the line number and its payload the line's
text (blank lines are skipped). With --json each line is an object
{"id": "...", "payload": "..."}, or "payload_b64" for binary payloads.

Results go to standard output, one per line: "ID<TAB>PAYLOAD", or with
--output json one object {"id", "payload" or "payload_b64", "attempt"}. With
--ordered they come in input order. Dead letters (tasks that failed every
attempt) and tasks cancelled meanwhile (gridctl task cancel) are reported on
standard error, and make gridctl exit with status 2.

submit creates a session (the flags --priority ... set its attributes) unless
--session names an existing one; it leaves the session open, so that
session show and dlq can inspect it, unless --close is given. A progress bar
is drawn on standard error when it is a terminal, unless --quiet.`

const submitExample = `  seq 1 1000 | gridctl submit --priority 8 > results.txt
  gridctl submit tasks.jsonl --json --ordered -o json --close
  gridctl submit --session 01J9ZQ3V6X6M6P3N4V6ZB0D2QK more-tasks.txt`

func newSubmitCmd(g *globals) *cobra.Command {
	var f submitFlags
	cmd := &cobra.Command{
		Use:     "submit [FILE|-]",
		Short:   "Submit tasks from a file or standard input and print their results",
		Long:    submitLong,
		Example: submitExample,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSubmit(cmd, g, &f, args)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.session, "session", "", "submit to this existing session instead of creating one")
	fs.StringVar(&f.app, "app", "gridctl", "application name recorded on the created session")
	fs.BoolVar(&f.json, "json", false, `read JSON lines {"id": ..., "payload": ...} (or "payload_b64")`)
	fs.IntVar(&f.batch, "batch", 1000, "tasks per submitted batch")
	fs.BoolVar(&f.ordered, "ordered", false, "print results in input order")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar and no summary on standard error")
	fs.BoolVar(&f.close, "close", false, "close the session once every task has an outcome")
	f.create.register(fs)
	return cmd
}

// createFlagNames are the session attribute flags submit shares with
// session update.
func createFlagNames(fs *pflag.FlagSet) []string {
	var names []string
	for _, n := range []string{"priority", "min-workers", "max-workers", "idle-timeout", "task-timeout",
		"max-attempts", "retry-backoff", "retry-backoff-max", "max-inflight-batches-per-worker", "preemptible",
		"cleanup-on-client-exit", "tags"} {
		if fs.Changed(n) {
			names = append(names, "--"+n)
		}
	}
	return names
}

func (f *updateFlags) attributes() *griddpb.SessionAttributes {
	return &griddpb.SessionAttributes{
		Priority: f.priority, MinWorkers: f.minWorkers, MaxWorkers: f.maxWorkers,
		IdleTimeoutMs: f.idleTimeout.Milliseconds(), TaskTimeoutMs: f.taskTimeout.Milliseconds(),
		MaxAttempts: f.maxAttempts, MaxInflightBatchesPerWorker: f.maxInflight,
		RetryBackoffMs: f.retryBackoff.Milliseconds(), RetryBackoffMaxMs: f.retryBackoffMax.Milliseconds(),
		Preemptible: f.preemptible, CleanupOnClientExit: f.cleanup, Tags: f.tags,
	}
}

// inputLine is one --json input line.
type inputLine struct {
	ID         string  `json:"id"`
	Payload    *string `json:"payload"`
	PayloadB64 []byte  `json:"payload_b64"`
}

// readTasks reads every task first: the total feeds the progress bar and
// the end condition, and a bad line fails before anything is submitted.
func readTasks(r io.Reader, asJSON bool) ([]client.Task, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var tasks []client.Task
	seen := make(map[string]int)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		t := client.Task{ID: strconv.Itoa(n), Payload: bytes.Clone(line)}
		if asJSON {
			var in inputLine
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				return nil, fmt.Errorf("line %d: want {\"id\": ..., \"payload\": ...}: %w", n, err)
			}
			if in.ID == "" {
				return nil, fmt.Errorf("line %d: the task has no \"id\"", n)
			}
			if in.Payload != nil && in.PayloadB64 != nil {
				return nil, fmt.Errorf("line %d: give \"payload\" or \"payload_b64\", not both", n)
			}
			t.ID, t.Payload = in.ID, in.PayloadB64
			if in.Payload != nil {
				t.Payload = []byte(*in.Payload)
			}
		}
		if first, dup := seen[t.ID]; dup {
			return nil, fmt.Errorf("line %d: task id %q repeats line %d; ids must be unique", n, t.ID, first)
		}
		seen[t.ID] = n
		tasks = append(tasks, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read tasks: %w", err)
	}
	return tasks, nil
}

func openInput(cmd *cobra.Command, args []string) (io.Reader, func(), error) {
	if len(args) == 0 || args[0] == "-" {
		return cmd.InOrStdin(), func() {}, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, nil, fmt.Errorf("open tasks: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}

// sdkClient dials the cluster with the SDK, which follows the leader and
// retries across failovers. Its log goes to stderr, warnings only: the
// command's own output is the results.
func sdkClient(ctx context.Context, g *globals, stderr io.Writer, dialOpts ...grpc.DialOption) (*client.Client, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := client.Dial(ctx, g.addrs, client.WithAPIKey(g.apiKey), client.WithLogger(log), client.WithTLS(g.tls),
		client.WithCallTimeout(g.timeout), client.WithDialOptions(dialOpts...))
	if err != nil {
		return nil, fmt.Errorf("connect to %v: %w", g.addrs, err)
	}
	return c, nil
}

func runSubmit(cmd *cobra.Command, g *globals, f *submitFlags, args []string) error {
	if f.batch <= 0 {
		return fmt.Errorf("--batch %d: want a positive number of tasks", f.batch)
	}
	if names := createFlagNames(cmd.Flags()); f.session != "" && len(names) > 0 {
		return fmt.Errorf("%v set the attributes of a new session; with --session use gridctl session update", names)
	}
	in, done, err := openInput(cmd, args)
	if err != nil {
		return err
	}
	tasks, err := readTasks(in, f.json)
	done()
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	if len(tasks) == 0 {
		if !f.quiet {
			fmt.Fprintln(stderr, "gridctl: no tasks to submit")
		}
		return nil
	}
	ctx := cmd.Context()
	c, err := sdkClient(ctx, g, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	var s *client.Session
	if f.session != "" {
		s, err = c.OpenSession(ctx, f.session)
	} else {
		s, err = c.CreateSession(ctx, f.create.attributes(), client.WithApp(f.app))
	}
	if err != nil {
		return fmt.Errorf("open a session: %w", err)
	}
	if !f.quiet {
		fmt.Fprintf(stderr, "gridctl: session %s: submitting %d tasks\n", s.ID(), len(tasks))
	}
	r := &submitRun{g: g, f: f, c: c, s: s, tasks: tasks, stdout: bufio.NewWriter(cmd.OutOrStdout()), stderr: stderr,
		bar: newProgressBar(stderr, !f.quiet && isTerminal(stderr))}
	runErr := r.run(ctx)
	r.bar.finish()
	// The session ends whatever happened: with --close on the server, or
	// detached, which flushes the acknowledgements of what was printed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
	defer cancel()
	if f.close {
		if err := s.Close(cctx); err != nil && runErr == nil {
			runErr = fmt.Errorf("close session %s: %w", s.ID(), err)
		}
	} else {
		_ = s.Detach()
	}
	if runErr != nil {
		return runErr
	}
	if !f.quiet {
		state := "left open"
		if f.close {
			state = "closed"
		}
		fmt.Fprintf(stderr, "gridctl: session %s: %d results, %d dead-lettered, %d cancelled (%s)\n", s.ID(),
			r.results, r.dead, r.cancelled, state)
	}
	switch {
	case r.dead > 0 && r.cancelled > 0:
		return &exitError{code: 2, msg: fmt.Sprintf("%d of %d tasks dead-lettered, %d cancelled", r.dead, len(tasks), r.cancelled)}
	case r.dead > 0:
		return &exitError{code: 2, msg: fmt.Sprintf("%d of %d tasks dead-lettered", r.dead, len(tasks))}
	case r.cancelled > 0:
		return &exitError{code: 2, msg: fmt.Sprintf("%d of %d tasks cancelled", r.cancelled, len(tasks))}
	}
	return nil
}

// submitRun submits the tasks and prints outcomes until every task has one.
type submitRun struct {
	g      *globals
	f      *submitFlags
	c      *client.Client
	s      *client.Session
	tasks  []client.Task
	stdout *bufio.Writer
	stderr io.Writer
	bar    *progressBar

	results, dead, cancelled int
}

// outcome is a result, a dead letter or a cancellation waiting for its turn
// (--ordered).
type outcome struct {
	res       *client.Result
	dead      *client.DeadLetter
	cancelled string // the id of a task cancelled meanwhile
}

type submitDone struct {
	duplicates int
	err        error
}

func (r *submitRun) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	index := make(map[string]int, len(r.tasks))
	for i, t := range r.tasks {
		index[t.ID] = i
	}
	subDone := make(chan submitDone, 1)
	go func() { subDone <- r.submit(ctx) }()
	cancels := r.watchCancels(ctx)
	var (
		results  = r.s.Results()
		dead     = r.s.DeadLetters()
		settled  = make([]bool, len(r.tasks))
		waiting  = make(map[int]outcome) // --ordered: outcomes ahead of their turn
		next     int                     // --ordered: the next index to print
		left     = len(r.tasks)
		drained  <-chan struct{}
		tick     = time.NewTicker(500 * time.Millisecond)
		failures uint64
	)
	defer tick.Stop()
	emitOne := func(o outcome) error {
		if o.res != nil {
			r.results++
			return r.printResult(*o.res)
		}
		if o.cancelled != "" {
			r.cancelled++
			failures++
			r.bar.clear()
			fmt.Fprintf(r.stderr, "gridctl: task %s was cancelled\n", o.cancelled)
			return nil
		}
		r.dead++
		failures++
		r.printDead(*o.dead)
		return nil
	}
	take := func(id string, o outcome) error {
		i, ok := index[id]
		if !ok || settled[i] {
			// Not one of ours: a result another client of this session left
			// unacknowledged. The SDK acknowledges it now, so print it
			// rather than lose it.
			return emitOne(o)
		}
		settled[i] = true
		left--
		if !r.f.ordered {
			return emitOne(o)
		}
		waiting[i] = o
		for {
			o, ok := waiting[next]
			if !ok {
				return nil
			}
			delete(waiting, next)
			next++
			if err := emitOne(o); err != nil {
				return err
			}
		}
	}
	for left > 0 {
		var err error
		select {
		case res, ok := <-results:
			if !ok {
				return fmt.Errorf("session %s ended with %d tasks without an outcome (was it closed?)", r.s.ID(), left)
			}
			err = take(res.TaskID, outcome{res: &res})
		case d, ok := <-dead:
			if !ok {
				dead = nil
				continue
			}
			err = take(d.TaskID, outcome{dead: &d})
		case sd := <-subDone:
			if sd.err != nil {
				return sd.err
			}
			if sd.duplicates > 0 {
				// Some ids were already in the session; their results may
				// have gone to an earlier client, so the end is when the
				// server has nothing left for this session.
				drained = r.watchDrained(ctx)
			}
			continue
		case <-cancels:
			// Someone cancelled tasks of the session (gridctl task cancel):
			// those of ours will never have an outcome, so stop waiting.
			var open []string
			for i, t := range r.tasks {
				if !settled[i] {
					open = append(open, t.ID)
				}
			}
			infos, terr := r.s.Tasks(ctx, open...)
			if terr != nil {
				continue // asked again at the next cancellation or tick
			}
			for _, ti := range infos {
				if ti.State == client.TaskCancelled {
					if err = take(ti.ID, outcome{cancelled: ti.ID}); err != nil {
						break
					}
				}
			}
		case <-drained:
			if left > 0 && !r.f.quiet {
				r.bar.clear()
				fmt.Fprintf(r.stderr, "gridctl: %d tasks were already in session %s and their outcomes were delivered earlier\n", left, r.s.ID())
			}
			left = 0
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for results: %w", ctx.Err())
		}
		if err != nil {
			return err
		}
		if err := r.stdout.Flush(); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		done := uint64(len(r.tasks) - left)
		r.bar.update(done, uint64(len(r.tasks)), failures, left == 0)
	}
	return r.stdout.Flush()
}

// submit sends the tasks in batches of --batch, one Submit at a time: the
// SDK resends across failovers, so an error here is a refusal.
func (r *submitRun) submit(ctx context.Context) submitDone {
	var d submitDone
	for i := 0; i < len(r.tasks); i += r.f.batch {
		res, err := r.s.Submit(ctx, r.tasks[i:min(i+r.f.batch, len(r.tasks))])
		if err != nil {
			d.err = fmt.Errorf("submit tasks %s..: %w", r.tasks[i].ID, err)
			return d
		}
		d.duplicates += res.Duplicates
	}
	return d
}

// watchCancels signals when the session's count of cancelled tasks grows.
func (r *submitRun) watchCancels(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		var seen uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			info, err := r.c.GetSession(ctx, r.s.ID())
			if n := info.GetCounts().GetCancelled(); err == nil && n > seen {
				seen = n
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}

// watchDrained closes its channel once the session has no pending task and
// no outcome left unacknowledged.
func (r *submitRun) watchDrained(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			info, err := r.c.GetSession(ctx, r.s.ID())
			if err == nil {
				c := info.GetCounts()
				if c.GetPending() == 0 && c.GetResultsUnacked() == 0 && c.GetDeadLettersUnacked() == 0 {
					close(ch)
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return ch
}

// resultJSON is one result line of -o json; payload_b64 replaces payload
// when the bytes are not UTF-8, like the --json input.
type resultJSON struct {
	ID         string   `json:"id"`
	Payload    *string  `json:"payload,omitempty"`
	PayloadB64 []byte   `json:"payload_b64,omitempty"`
	Attempt    int32    `json:"attempt,omitempty"`
	DeadLetter bool     `json:"dead_letter,omitempty"`
	Errors     []string `json:"errors,omitempty"`
}

func payloadJSON(j *resultJSON, p []byte) {
	if utf8.Valid(p) {
		s := string(p)
		j.Payload = &s
		return
	}
	j.PayloadB64 = p
}

func (r *submitRun) printResult(res client.Result) error {
	r.bar.clear()
	if r.g.output == "json" {
		j := resultJSON{ID: res.TaskID, Attempt: res.Attempt}
		payloadJSON(&j, res.Payload)
		b, err := json.Marshal(j)
		if err != nil {
			return fmt.Errorf("encode result %s: %w", res.TaskID, err)
		}
		r.stdout.Write(b)
		return r.stdout.WriteByte('\n')
	}
	// One line per result: a payload's own final newline is not doubled.
	p := bytes.TrimSuffix(res.Payload, []byte("\n"))
	r.stdout.WriteString(res.TaskID)
	r.stdout.WriteByte('\t')
	r.stdout.Write(p)
	return r.stdout.WriteByte('\n')
}

func (r *submitRun) printDead(d client.DeadLetter) {
	r.bar.clear()
	if r.g.output == "json" {
		j := resultJSON{ID: d.TaskID, Attempt: d.Attempts, DeadLetter: true, Errors: d.Errors}
		payloadJSON(&j, d.Payload)
		if b, err := json.Marshal(j); err == nil {
			fmt.Fprintf(r.stderr, "%s\n", b)
		}
		return
	}
	last := "no error recorded"
	if len(d.Errors) > 0 {
		last = d.Errors[len(d.Errors)-1]
	}
	fmt.Fprintf(r.stderr, "gridctl: task %s dead-lettered after %d attempts: %s\n", d.TaskID, d.Attempts, last)
}
