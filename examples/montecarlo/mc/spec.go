// Package mc is a Monte Carlo estimate of pi split into gridd tasks: the
// task spec and the worker's handler, and the client workload that submits
// the tasks and combines the results.
package mc

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/gridd/gridd/sdk/worker"
)

// Spec is a task's payload: draw Samples points with a generator seeded
// with Seed. Deterministic, so a task that runs twice gives the same result.
type Spec struct {
	Seed    uint64 `json:"seed"`
	Samples int    `json:"samples"`
}

// Outcome is a task's result payload: how many of the points fell inside
// the quarter circle.
type Outcome struct {
	Inside  int `json:"inside"`
	Samples int `json:"samples"`
}

// maxSamples keeps a malformed spec from occupying a worker for hours.
const maxSamples = 100_000_000

// Encode returns the payload of a spec.
func (s Spec) Encode() []byte {
	b, _ := json.Marshal(s) // a struct of two numbers always marshals
	return b
}

// DecodeSpec parses and checks a task payload.
func DecodeSpec(b []byte) (Spec, error) {
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("montecarlo: bad task payload: %w", err)
	}
	if s.Samples <= 0 || s.Samples > maxSamples {
		return s, fmt.Errorf("montecarlo: samples %d out of range 1..%d", s.Samples, maxSamples)
	}
	return s, nil
}

// DecodeOutcome parses a result payload.
func DecodeOutcome(b []byte) (Outcome, error) {
	var o Outcome
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("montecarlo: bad result payload: %w", err)
	}
	return o, nil
}

// Estimate draws the spec's points. It checks ctx every few thousand points
// so a cancelled task stops promptly.
func Estimate(ctx context.Context, s Spec) (Outcome, error) {
	rnd := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	inside := 0
	for i := range s.Samples {
		if i%16384 == 0 && ctx.Err() != nil {
			return Outcome{}, ctx.Err()
		}
		x, y := rnd.Float64(), rnd.Float64()
		if x*x+y*y <= 1 {
			inside++
		}
	}
	return Outcome{Inside: inside, Samples: s.Samples}, nil
}

// Handle is the worker's handler: spec in, outcome out.
func Handle(ctx context.Context, t worker.Task) ([]byte, error) {
	s, err := DecodeSpec(t.Payload)
	if err != nil {
		return nil, err
	}
	o, err := Estimate(ctx, s)
	if err != nil {
		return nil, err
	}
	return json.Marshal(o)
}
