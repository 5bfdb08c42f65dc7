// Package pricer prices a European call and put by Monte Carlo under
// Black-Scholes (geometric Brownian motion), split into gridd tasks: the
// task spec and the worker's handler, the closed-form price to compare
// with, and the client workload that submits the tasks and aggregates
// their sums into a price, a standard error and a confidence interval.
package pricer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gridd/gridd/sdk/worker"
)

// Market holds the contract and model parameters shared by every task.
type Market struct {
	S0    float64 `json:"s0"`    // spot
	K     float64 `json:"k"`     // strike
	R     float64 `json:"r"`     // continuously compounded risk-free rate
	Sigma float64 `json:"sigma"` // volatility
	T     float64 `json:"t"`     // maturity in years
}

// Validate rejects parameters for which the model means nothing.
func (m Market) Validate() error {
	for _, v := range []float64{m.S0, m.K, m.R, m.Sigma, m.T} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("pricer: parameters must be finite")
		}
	}
	if m.S0 <= 0 || m.K <= 0 || m.Sigma <= 0 || m.T <= 0 {
		return fmt.Errorf("pricer: s0, k, sigma and t must be positive (got s0=%g k=%g sigma=%g t=%g)",
			m.S0, m.K, m.Sigma, m.T)
	}
	return nil
}

// Spec is a task's payload: simulate Paths paths with a generator seeded
// with Seed. Deterministic, so a task that runs twice (execution is
// at-least-once) gives the same sums.
type Spec struct {
	Market
	Seed  uint64 `json:"seed"`
	Paths int    `json:"paths"` // even: paths come in antithetic pairs
}

// Outcome is a task's result payload. The samples are the undiscounted
// payoffs averaged over each antithetic pair, which are independent of
// each other (the two paths of a pair are not), so the client can compute
// a variance from the sums of squares.
type Outcome struct {
	Pairs    int     `json:"pairs"`
	CallSum  float64 `json:"call_sum"`
	CallSum2 float64 `json:"call_sum2"`
	PutSum   float64 `json:"put_sum"`
	PutSum2  float64 `json:"put_sum2"`
}

// MaxPaths keeps a malformed spec from occupying a worker for hours.
const MaxPaths = 100_000_000

// Encode returns the payload of a spec.
func (s Spec) Encode() []byte {
	b, _ := json.Marshal(s) // numbers only: always marshals
	return b
}

// DecodeSpec parses and checks a task payload.
func DecodeSpec(b []byte) (Spec, error) {
	var s Spec
	// Strict, so that another example's task fails here instead of
	// being priced with zero parameters.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("pricer: bad task payload (not a pricing task?): %w", err)
	}
	if s.Paths < 2 || s.Paths > MaxPaths || s.Paths%2 != 0 {
		return s, fmt.Errorf("pricer: paths %d must be even and in 2..%d", s.Paths, MaxPaths)
	}
	return s, s.Validate()
}

// DecodeOutcome parses a result payload.
func DecodeOutcome(b []byte) (Outcome, error) {
	var o Outcome
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("pricer: bad result payload: %w", err)
	}
	return o, nil
}

// Simulate draws the spec's paths: S_T = S0 exp((r - sigma^2/2) T + sigma
// sqrt(T) Z), once with Z and once with -Z (antithetic variates: the two
// payoffs are negatively correlated, so their mean varies less than one
// path's payoff). It checks ctx every few thousand pairs so that a
// cancelled task stops promptly.
func Simulate(ctx context.Context, s Spec) (Outcome, error) {
	rnd := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	drift := (s.R - s.Sigma*s.Sigma/2) * s.T
	vol := s.Sigma * math.Sqrt(s.T)
	o := Outcome{Pairs: s.Paths / 2}
	for i := range o.Pairs {
		if i%8192 == 0 && ctx.Err() != nil {
			return Outcome{}, ctx.Err()
		}
		z := rnd.NormFloat64()
		up := s.S0 * math.Exp(drift+vol*z)
		down := s.S0 * math.Exp(drift-vol*z)
		c := (max(up-s.K, 0) + max(down-s.K, 0)) / 2
		p := (max(s.K-up, 0) + max(s.K-down, 0)) / 2
		o.CallSum += c
		o.CallSum2 += c * c
		o.PutSum += p
		o.PutSum2 += p * p
	}
	return o, nil
}

// Handle is the worker's handler: spec in, outcome out.
func Handle(ctx context.Context, t worker.Task) ([]byte, error) {
	s, err := DecodeSpec(t.Payload)
	if err != nil {
		return nil, err
	}
	o, err := Simulate(ctx, s)
	if err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

// normCDF is the standard normal distribution function.
func normCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// BlackScholes returns the closed-form prices of the European call and put.
func BlackScholes(m Market) (call, put float64) {
	sqrtT := math.Sqrt(m.T)
	d1 := (math.Log(m.S0/m.K) + (m.R+m.Sigma*m.Sigma/2)*m.T) / (m.Sigma * sqrtT)
	d2 := d1 - m.Sigma*sqrtT
	df := math.Exp(-m.R * m.T)
	call = m.S0*normCDF(d1) - m.K*df*normCDF(d2)
	put = m.K*df*normCDF(-d2) - m.S0*normCDF(-d1)
	return call, put
}

// Estimate is a Monte Carlo price with its standard error and 95%
// confidence interval.
type Estimate struct {
	Price, StdErr, Low, High float64
}

// Accumulator adds task outcomes up. The zero value is empty.
type Accumulator struct {
	Pairs                              int
	CallSum, CallSum2, PutSum, PutSum2 float64
}

// Add includes one task's outcome.
func (a *Accumulator) Add(o Outcome) {
	a.Pairs += o.Pairs
	a.CallSum += o.CallSum
	a.CallSum2 += o.CallSum2
	a.PutSum += o.PutSum
	a.PutSum2 += o.PutSum2
}

// Prices returns the discounted call and put estimates.
func (a *Accumulator) Prices(m Market) (call, put Estimate) {
	df := math.Exp(-m.R * m.T)
	return estimate(a.Pairs, a.CallSum, a.CallSum2, df), estimate(a.Pairs, a.PutSum, a.PutSum2, df)
}

func estimate(n int, sum, sum2, df float64) Estimate {
	if n == 0 {
		return Estimate{Price: math.NaN(), StdErr: math.NaN(), Low: math.NaN(), High: math.NaN()}
	}
	mean := sum / float64(n)
	variance := 0.0
	if n > 1 {
		// Sample variance; clamped because rounding can push it below 0
		// for a deep out-of-the-money option whose payoffs are all 0.
		variance = max((sum2-float64(n)*mean*mean)/float64(n-1), 0)
	}
	se := df * math.Sqrt(variance/float64(n))
	price := df * mean
	const z95 = 1.959963984540054
	return Estimate{Price: price, StdErr: se, Low: price - z95*se, High: price + z95*se}
}
