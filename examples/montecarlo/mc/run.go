package mc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
)

// Config describes a client run.
type Config struct {
	Tasks      int // default 20,000
	BatchSize  int // tasks per Submit; default 100
	Submitters int // concurrent submitting goroutines; default 4
	Samples    int // points per task; default 200,000
	Seed       uint64
	// MaxAttempts per task (0: the server's default).
	MaxAttempts int32
	// Progress, when set, is updated as results arrive.
	Progress *Progress
	// OnResult, when set, is called after each distinct result or dead
	// letter with the number received so far. It runs on the collecting
	// goroutine: it must return quickly.
	OnResult func(done, total int, s *client.Session)
	Logger   *slog.Logger
}

func (c *Config) defaults() {
	if c.Tasks <= 0 {
		c.Tasks = 20_000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Submitters <= 0 {
		c.Submitters = 4
	}
	if c.Samples <= 0 {
		c.Samples = 200_000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Summary is what a run achieved.
type Summary struct {
	SessionID   string
	Tasks       int
	Results     int // distinct results received
	DeadLetters int
	// Missing is Tasks - Results: tasks whose result never came. Must be 0.
	Missing int
	// Duplicates are results the application received twice. The SDK
	// promises 0; counted here to check it.
	Duplicates int
	// Invalid are results whose payload did not match their task.
	Invalid     int
	Wall        time.Duration
	TasksPerSec float64
	Pi          float64
	Inside      uint64
	Points      uint64
	Stats       client.Stats // the SDK's counters
}

// OK reports whether every task produced exactly one valid result.
func (s Summary) OK() bool {
	return s.Missing == 0 && s.Duplicates == 0 && s.Invalid == 0 && s.DeadLetters == 0
}

// Print writes the summary for a person.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "session            %s\n", s.SessionID)
	fmt.Fprintf(w, "tasks              %d\n", s.Tasks)
	fmt.Fprintf(w, "results            %d\n", s.Results)
	fmt.Fprintf(w, "wall time          %s\n", s.Wall.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput         %.0f tasks/s\n", s.TasksPerSec)
	fmt.Fprintf(w, "pi estimate        %.6f (error %.2e, %d points)\n", s.Pi, math.Abs(s.Pi-math.Pi), s.Points)
	fmt.Fprintf(w, "repeats dropped    %d (results the wire delivered twice, removed by the SDK)\n", s.Stats.ResultRepeats)
	fmt.Fprintf(w, "batches resent     %d\n", s.Stats.BatchesResent)
	fmt.Fprintf(w, "reconnects         %d\n", s.Stats.Reconnects)
	fmt.Fprintf(w, "dead letters       %d\n", s.DeadLetters)
	fmt.Fprintf(w, "duplicates         %d (results the application saw twice; must be 0)\n", s.Duplicates)
	fmt.Fprintf(w, "invalid            %d\n", s.Invalid)
	fmt.Fprintf(w, "missing            %d (tasks without a result; must be 0)\n", s.Missing)
}

// TaskID names task i of a run.
func TaskID(i int) string { return fmt.Sprintf("pi-%07d", i) }

// Run creates a session, submits cfg.Tasks tasks from cfg.Submitters
// goroutines, collects every result, closes the session and returns the
// summary. It stops early, with the partial summary, when ctx ends.
func Run(ctx context.Context, c *client.Client, cfg Config) (Summary, error) {
	cfg.defaults()
	sum := Summary{Tasks: cfg.Tasks}
	s, err := c.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: cfg.MaxAttempts},
		client.WithApp("montecarlo"))
	if err != nil {
		return sum, fmt.Errorf("create session: %w", err)
	}
	sum.SessionID = s.ID()
	defer func() { _ = s.Detach() }()
	start := time.Now()
	if cfg.Progress != nil {
		cfg.Progress.Start(cfg.Tasks)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	submitErr := make(chan error, cfg.Submitters)
	for g := range cfg.Submitters {
		wg.Go(func() {
			if err := submit(runCtx, s, cfg, g); err != nil {
				submitErr <- err
				cancel()
			}
		})
	}
	col := newCollector(cfg)
	stopTicker := make(chan struct{})
	if cfg.Progress != nil {
		wg.Go(func() { tick(cfg.Progress, s, col, stopTicker) })
	}
	collectErr := col.run(runCtx, s)
	close(stopTicker)
	cancel()
	wg.Wait()
	if cfg.Progress != nil {
		cfg.Progress.Update(col.count(), fmt.Sprintf("reconnects %d", s.Stats().Reconnects))
		cfg.Progress.Finish()
	}

	col.fill(&sum)
	sum.Wall = time.Since(start)
	sum.TasksPerSec = float64(sum.Results) / sum.Wall.Seconds()
	sum.Stats = s.Stats()
	select {
	case err = <-submitErr:
		return sum, fmt.Errorf("submit: %w", err)
	default:
	}
	if collectErr != nil {
		return sum, collectErr
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if err := s.Close(cctx); err != nil {
		cfg.Logger.Warn("closing the session failed", "session", s.ID(), "err", err)
	}
	return sum, nil
}

// submit sends the tasks g, g+n, g+2n, ... in batches.
func submit(ctx context.Context, s *client.Session, cfg Config, g int) error {
	batch := make([]client.Task, 0, cfg.BatchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := s.Submit(ctx, batch)
		batch = batch[:0]
		return err
	}
	for i := g; i < cfg.Tasks; i += cfg.Submitters {
		spec := Spec{Seed: cfg.Seed*1_000_003 + uint64(i), Samples: cfg.Samples}
		batch = append(batch, client.Task{ID: TaskID(i), Payload: spec.Encode()})
		if len(batch) == cfg.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func tick(p *Progress, s *client.Session, col *collector, stop <-chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		st := s.Stats()
		p.Update(col.count(), fmt.Sprintf("reconnects %d", st.Reconnects))
		p.Tick()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// collector receives results and checks them against the tasks.
type collector struct {
	cfg Config

	mu     sync.Mutex
	seen   map[string]bool
	dead   int
	dup    int
	bad    int
	inside uint64
	points uint64
}

func newCollector(cfg Config) *collector {
	return &collector{cfg: cfg, seen: make(map[string]bool, cfg.Tasks)}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *collector) run(ctx context.Context, s *client.Session) error {
	results, dead := s.Results(), s.DeadLetters()
	for c.count() < c.cfg.Tasks {
		select {
		case r, ok := <-results:
			if !ok {
				return errors.New("the session's results ended early")
			}
			c.result(r)
		case d, ok := <-dead:
			if !ok {
				dead = nil
				continue
			}
			c.deadLetter(d)
		case <-ctx.Done():
			return fmt.Errorf("waiting for results: %w", ctx.Err())
		}
		if c.cfg.OnResult != nil {
			c.cfg.OnResult(c.count(), c.cfg.Tasks, s)
		}
	}
	return nil
}

func (c *collector) result(r client.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[r.TaskID] {
		c.dup++
		return
	}
	c.seen[r.TaskID] = true
	o, err := DecodeOutcome(r.Payload)
	if err != nil || o.Samples != c.cfg.Samples || o.Inside < 0 || o.Inside > o.Samples {
		c.bad++
		return
	}
	c.inside += uint64(o.Inside)
	c.points += uint64(o.Samples)
}

func (c *collector) deadLetter(d client.DeadLetter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[d.TaskID] {
		c.dup++
		return
	}
	c.seen[d.TaskID] = true
	c.dead++
	c.cfg.Logger.Warn("task dead-lettered", "task", d.TaskID, "errors", d.Errors)
}

func (c *collector) fill(s *Summary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Results = len(c.seen) - c.dead
	s.DeadLetters = c.dead
	s.Duplicates = c.dup
	s.Invalid = c.bad
	s.Missing = s.Tasks - s.Results
	s.Inside, s.Points = c.inside, c.points
	if c.points > 0 {
		s.Pi = 4 * float64(c.inside) / float64(c.points)
	}
}
