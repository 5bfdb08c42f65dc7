package pricer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
)

// Config describes a client run.
type Config struct {
	Market
	Paths int // total paths, split evenly across the tasks; default 10,000,000
	Tasks int // default 2,000
	// BatchSize is how many tasks one Submit call carries; default 500.
	BatchSize int
	Seed      uint64
	// MaxAttempts per task (0: the server's default).
	MaxAttempts int32
	// OnResult, when set, is called after each distinct result or dead
	// letter with the number received so far. It runs on the collecting
	// goroutine: it must return quickly.
	OnResult func(done, total int, s *client.Session)
	Logger   *slog.Logger
}

// DefaultMarket is an at-the-money one-year option.
var DefaultMarket = Market{S0: 100, K: 100, R: 0.05, Sigma: 0.2, T: 1}

func (c *Config) defaults() {
	if c.Market == (Market{}) {
		c.Market = DefaultMarket
	}
	if c.Tasks <= 0 {
		c.Tasks = 2_000
	}
	if c.Paths <= 0 {
		c.Paths = 10_000_000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// TaskID names task i of a run.
func TaskID(i int) string { return fmt.Sprintf("price-%07d", i) }

// Specs splits the run's paths into its tasks' specs: whole antithetic
// pairs, the remainder spread over the first tasks. Task i gets seed
// Seed*1_000_003+i, so a run is reproducible from its seed.
func (c Config) Specs() ([]Spec, error) {
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	pairs := c.Paths / 2
	if pairs < c.Tasks {
		return nil, fmt.Errorf("pricer: %d paths cannot fill %d tasks (at least 2 paths per task)", c.Paths, c.Tasks)
	}
	per, extra := pairs/c.Tasks, pairs%c.Tasks
	if 2*(per+1) > MaxPaths {
		return nil, fmt.Errorf("pricer: %d paths per task is over the limit of %d: use more tasks", 2*(per+1), MaxPaths)
	}
	specs := make([]Spec, c.Tasks)
	for i := range specs {
		n := per
		if i < extra {
			n++
		}
		specs[i] = Spec{Market: c.Market, Seed: c.Seed*1_000_003 + uint64(i), Paths: 2 * n}
	}
	return specs, nil
}

// Summary is what a run achieved.
type Summary struct {
	Market
	SessionID   string
	Tasks       int
	Results     int // distinct results received
	DeadLetters int
	// Missing are tasks without a result. Must be 0.
	Missing int
	// Duplicates are results the application received twice. The SDK
	// promises 0; counted here to check it.
	Duplicates int
	// Invalid are results whose payload did not match their task.
	Invalid     int
	Paths       int // paths behind the estimates
	Call, Put   Estimate
	CallBS      float64 // closed-form prices
	PutBS       float64
	Wall        time.Duration
	TasksPerSec float64
	Stats       client.Stats // the SDK's counters
}

// OK reports whether every task produced exactly one valid result.
func (s Summary) OK() bool {
	return s.Missing == 0 && s.Duplicates == 0 && s.Invalid == 0 && s.DeadLetters == 0
}

// Print writes the summary for a person.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "session            %s\n", s.SessionID)
	fmt.Fprintf(w, "option             European, S0=%g K=%g r=%g sigma=%g T=%g\n", s.S0, s.K, s.R, s.Sigma, s.T)
	fmt.Fprintf(w, "paths              %d (in antithetic pairs)\n", s.Paths)
	for _, o := range []struct {
		name string
		e    Estimate
		bs   float64
	}{{"call", s.Call, s.CallBS}, {"put", s.Put, s.PutBS}} {
		fmt.Fprintf(w, "%-4s price         %.4f  (std err %.2g, 95%% CI [%.4f, %.4f]); Black-Scholes %.4f, %+.1f std err\n",
			o.name, o.e.Price, o.e.StdErr, o.e.Low, o.e.High, o.bs, (o.e.Price-o.bs)/o.e.StdErr)
	}
	fmt.Fprintf(w, "tasks              %d\n", s.Tasks)
	fmt.Fprintf(w, "results            %d\n", s.Results)
	fmt.Fprintf(w, "wall time          %s\n", s.Wall.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput         %.0f tasks/s\n", s.TasksPerSec)
	fmt.Fprintf(w, "repeats dropped    %d (results the wire delivered twice, removed by the SDK)\n", s.Stats.ResultRepeats)
	fmt.Fprintf(w, "batches resent     %d\n", s.Stats.BatchesResent)
	fmt.Fprintf(w, "reconnects         %d\n", s.Stats.Reconnects)
	fmt.Fprintf(w, "dead letters       %d\n", s.DeadLetters)
	fmt.Fprintf(w, "duplicates         %d (results the application saw twice; must be 0)\n", s.Duplicates)
	fmt.Fprintf(w, "invalid            %d\n", s.Invalid)
	fmt.Fprintf(w, "missing            %d (tasks without a result; must be 0)\n", s.Missing)
}

// Run creates a session, submits the tasks, collects every result, closes
// the session and returns the summary. It stops early, with the partial
// summary, when ctx ends.
func Run(ctx context.Context, c *client.Client, cfg Config) (Summary, error) {
	cfg.defaults()
	sum := Summary{Market: cfg.Market, Tasks: cfg.Tasks}
	sum.CallBS, sum.PutBS = BlackScholes(cfg.Market)
	specs, err := cfg.Specs()
	if err != nil {
		return sum, err
	}
	s, err := c.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: cfg.MaxAttempts},
		client.WithApp("pricing"))
	if err != nil {
		return sum, fmt.Errorf("create session: %w", err)
	}
	sum.SessionID = s.ID()
	defer func() { _ = s.Detach() }()
	start := time.Now()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	submitErr := make(chan error, 1)
	go func() { submitErr <- submit(runCtx, s, specs, cfg.BatchSize) }()
	col := collector{cfg: cfg, specs: specs, seen: make(map[string]bool, len(specs))}
	collectErr := col.run(runCtx, s, submitErr)
	cancel()

	col.fill(&sum)
	sum.Wall = time.Since(start)
	sum.TasksPerSec = float64(sum.Results) / sum.Wall.Seconds()
	sum.Stats = s.Stats()
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

// submit sends the tasks in batches; Submit returns once a batch is
// durable, so a returned nil means every task is safe in the cluster.
func submit(ctx context.Context, s *client.Session, specs []Spec, batchSize int) error {
	batch := make([]client.Task, 0, batchSize)
	for i, sp := range specs {
		batch = append(batch, client.Task{ID: TaskID(i), Payload: sp.Encode()})
		if len(batch) == batchSize || i == len(specs)-1 {
			if _, err := s.Submit(ctx, batch); err != nil {
				return fmt.Errorf("submit: %w", err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

// collector receives results and checks them against the tasks. It runs
// on one goroutine, so it needs no lock.
type collector struct {
	cfg   Config
	specs []Spec
	seen  map[string]bool
	dead  int
	dup   int
	bad   int
	acc   Accumulator
}

func (c *collector) run(ctx context.Context, s *client.Session, submitErr <-chan error) error {
	results, dead := s.Results(), s.DeadLetters()
	for len(c.seen) < len(c.specs) {
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
		case err := <-submitErr:
			if err != nil {
				return err
			}
			submitErr = nil // every task is in; keep collecting
			continue
		case <-ctx.Done():
			return fmt.Errorf("waiting for results: %w", ctx.Err())
		}
		if c.cfg.OnResult != nil {
			c.cfg.OnResult(len(c.seen), len(c.specs), s)
		}
	}
	return nil
}

// index returns the task number of an id this run submitted, or -1.
func (c *collector) index(id string) int {
	var i int
	if _, err := fmt.Sscanf(id, "price-%d", &i); err != nil || i < 0 || i >= len(c.specs) || TaskID(i) != id {
		return -1
	}
	return i
}

func (c *collector) result(r client.Result) {
	if c.seen[r.TaskID] {
		c.dup++
		return
	}
	i := c.index(r.TaskID)
	if i < 0 {
		c.bad++
		return
	}
	c.seen[r.TaskID] = true
	o, err := DecodeOutcome(r.Payload)
	if err != nil || 2*o.Pairs != c.specs[i].Paths {
		c.bad++
		return
	}
	c.acc.Add(o)
}

func (c *collector) deadLetter(d client.DeadLetter) {
	if c.seen[d.TaskID] {
		c.dup++
		return
	}
	c.seen[d.TaskID] = true
	c.dead++
	c.cfg.Logger.Warn("task dead-lettered", "task", d.TaskID, "errors", d.Errors)
}

func (c *collector) fill(s *Summary) {
	s.DeadLetters = c.dead
	s.Results = len(c.seen) - c.dead
	s.Duplicates = c.dup
	s.Invalid = c.bad
	s.Missing = s.Tasks - s.Results
	s.Paths = 2 * c.acc.Pairs
	s.Call, s.Put = c.acc.Prices(s.Market)
}
