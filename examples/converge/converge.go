package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// The problem: fit a linear model y = w·x to samples spread over shards,
// by gradient descent on the mean squared error. The samples come from a
// known w (TrueWeights) plus noise, so the answer is known. Each shard's
// samples are generated from its seed by the worker, so a task's payload is
// a few bytes; the model's weights are the session's shared data, one
// update level per iteration.

// Shard is a task's payload: which samples to take the gradient over.
type Shard struct {
	Seed    uint64 `json:"seed"`
	Samples int    `json:"samples"`
	Dim     int    `json:"dim"`
}

// Gradient is a task's result: the sum over the shard's samples of the
// squared error's gradient, and of the squared error.
type Gradient struct {
	Sum     []float64 `json:"sum"`
	Loss    float64   `json:"loss"`
	Samples int       `json:"samples"`
}

// Params are the shared data: the weights of iteration Iteration.
type Params struct {
	Iteration int       `json:"iteration"`
	Weights   []float64 `json:"weights"`
}

// TrueWeights are the weights the samples are drawn from: 1, -2, 3, -4, ...
func TrueWeights(dim int) []float64 {
	w := make([]float64, dim)
	for i := range w {
		w[i] = float64(i + 1)
		if i%2 == 1 {
			w[i] = -w[i]
		}
	}
	return w
}

// samples generates a shard's samples: x ~ N(0, 1) per feature, y = w*·x
// plus noise of standard deviation 0.1.
func (s Shard) samples(fn func(x []float64, y float64)) {
	rng := rand.New(rand.NewPCG(s.Seed, 0x5eed))
	truth := TrueWeights(s.Dim)
	x := make([]float64, s.Dim)
	for range s.Samples {
		y := 0.1 * rng.NormFloat64()
		for i := range x {
			x[i] = rng.NormFloat64()
			y += truth[i] * x[i]
		}
		fn(x, y)
	}
}

// Compute returns the shard's gradient at w.
func (s Shard) Compute(w []float64) (Gradient, error) {
	if len(w) != s.Dim {
		return Gradient{}, fmt.Errorf("weights have %d dimensions, the shard %d", len(w), s.Dim)
	}
	g := Gradient{Sum: make([]float64, s.Dim), Samples: s.Samples}
	s.samples(func(x []float64, y float64) {
		e := -y
		for i := range x {
			e += w[i] * x[i]
		}
		g.Loss += e * e
		for i := range x {
			g.Sum[i] += 2 * e * x[i]
		}
	})
	return g, nil
}

// Handle is the worker's task handler: the gradient of its shard at the
// weights of the level the task requires, which the worker SDK fetched.
func Handle(_ context.Context, t worker.Task) ([]byte, error) {
	var s Shard
	if err := json.Unmarshal(t.Payload, &s); err != nil || s.Dim <= 0 || s.Samples <= 0 {
		return nil, fmt.Errorf("task %s is not a converge shard (wrong example's worker?)", t.ID)
	}
	if t.SharedData == nil {
		return nil, errors.New("task came without shared data: was it submitted with UseSharedData?")
	}
	var p Params
	if err := json.Unmarshal(t.SharedData, &p); err != nil {
		return nil, fmt.Errorf("shared data level %d is not converge parameters: %w", t.SharedDataLevel, err)
	}
	g, err := s.Compute(p.Weights)
	if err != nil {
		return nil, err
	}
	return json.Marshal(g)
}

// Config is a run of the descent.
type Config struct {
	Dim, Shards, Samples int     // the problem: shards of samples each
	Rate                 float64 // the learning rate
	Tolerance            float64 // stop when the gradient's norm is below it
	MaxIterations        int
	Seed                 uint64
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	switch {
	case c.Dim < 1 || c.Dim > 1000:
		return fmt.Errorf("--dim %d: want 1..1000", c.Dim)
	case c.Shards < 1 || c.Samples < 1:
		return fmt.Errorf("--shards %d, --samples %d: want at least 1 each", c.Shards, c.Samples)
	case c.Rate <= 0 || c.Tolerance <= 0 || c.MaxIterations < 1:
		return fmt.Errorf("--rate %g, --tolerance %g, --max-iterations %d: want positive values",
			c.Rate, c.Tolerance, c.MaxIterations)
	}
	return nil
}

// Iteration is one step's summary.
type Iteration struct {
	Level    int64
	Loss     float64 // mean squared error at the level's weights
	GradNorm float64
	Took     time.Duration
}

// Outcome is a finished descent.
type Outcome struct {
	Weights    []float64
	Iterations []Iteration
	Converged  bool
}

// Descend runs the iterative pattern on a session: the weights go to the
// shared data as level 1; each iteration submits one task per shard
// requiring the current level, sums the gradients, and stores the next
// weights as the next level, until the gradient is small enough.
func Descend(ctx context.Context, c *client.Client, cfg Config, progress func(Iteration)) (Outcome, error) {
	s, err := c.CreateSession(ctx, nil, client.WithApp("converge"))
	if err != nil {
		return Outcome{}, err
	}
	// Closing the session deletes its shared data as well.
	defer func() { _ = s.Close(context.WithoutCancel(ctx)) }()
	w := make([]float64, cfg.Dim)
	var out Outcome
	for level := int64(1); level <= int64(cfg.MaxIterations); level++ {
		start := time.Now()
		params, _ := json.Marshal(Params{Iteration: int(level), Weights: w})
		if level == 1 {
			_, err = c.SetSharedData(ctx, s.ID(), level, params, 0)
		} else {
			_, err = c.UpdateSharedData(ctx, s.ID(), level, params, 0)
		}
		if err != nil {
			return out, fmt.Errorf("iteration %d: store the weights: %w", level, err)
		}
		tasks := make([]client.Task, cfg.Shards)
		for i := range tasks {
			p, _ := json.Marshal(Shard{Seed: cfg.Seed + uint64(i), Samples: cfg.Samples, Dim: cfg.Dim})
			tasks[i] = client.Task{ID: fmt.Sprintf("it%d-shard%d", level, i), Payload: p,
				UseSharedData: true, SharedDataLevel: level}
		}
		if _, err := s.Submit(ctx, tasks); err != nil {
			return out, fmt.Errorf("iteration %d: submit: %w", level, err)
		}
		sum := make([]float64, cfg.Dim)
		loss, n := 0.0, 0
		for range cfg.Shards {
			select {
			case r := <-s.Results():
				var g Gradient
				if err := json.Unmarshal(r.Payload, &g); err != nil || len(g.Sum) != cfg.Dim {
					return out, fmt.Errorf("iteration %d: task %s: bad result %q", level, r.TaskID, r.Payload)
				}
				for i := range sum {
					sum[i] += g.Sum[i]
				}
				loss += g.Loss
				n += g.Samples
			case d := <-s.DeadLetters():
				return out, fmt.Errorf("iteration %d: task %s failed: %v", level, d.TaskID, d.Errors)
			case <-ctx.Done():
				return out, ctx.Err()
			}
		}
		norm := 0.0
		for i := range w {
			g := sum[i] / float64(n)
			norm += g * g
			w[i] -= cfg.Rate * g
		}
		it := Iteration{Level: level, Loss: loss / float64(n), GradNorm: math.Sqrt(norm), Took: time.Since(start)}
		out.Iterations = append(out.Iterations, it)
		if progress != nil {
			progress(it)
		}
		if it.GradNorm < cfg.Tolerance {
			out.Converged = true
			break
		}
	}
	out.Weights = w
	return out, nil
}
