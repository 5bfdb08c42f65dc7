package pricer

import (
	"context"
	"math"
	"testing"

	"github.com/gridd/gridd/sdk/worker"
)

func TestBlackScholesKnownValues(t *testing.T) {
	// Hull's textbook example values, and put-call parity.
	m := Market{S0: 100, K: 100, R: 0.05, Sigma: 0.2, T: 1}
	call, put := BlackScholes(m)
	if math.Abs(call-10.4506) > 1e-4 || math.Abs(put-5.5735) > 1e-4 {
		t.Fatalf("BlackScholes(%+v) = %.4f, %.4f; want 10.4506, 5.5735", m, call, put)
	}
	for _, m := range []Market{{42, 40, 0.1, 0.2, 0.5}, {100, 150, 0.01, 0.5, 3}, {50, 20, 0, 0.1, 0.25}} {
		c, p := BlackScholes(m)
		if parity := m.S0 - m.K*math.Exp(-m.R*m.T); math.Abs(c-p-parity) > 1e-9 {
			t.Errorf("%+v: call-put = %v, want %v", m, c-p, parity)
		}
	}
	if c, _ := BlackScholes(Market{42, 40, 0.1, 0.2, 0.5}); math.Abs(c-4.7594) > 1e-4 {
		t.Errorf("Hull 15.6: call %.4f, want 4.7594", c)
	}
}

// The simulated prices fall within a few standard errors of the closed
// form, for options at, in and out of the money.
func TestMonteCarloMatchesClosedForm(t *testing.T) {
	ctx := context.Background()
	for _, m := range []Market{DefaultMarket, {100, 80, 0.03, 0.3, 2}, {100, 130, 0.02, 0.25, 0.5}} {
		var acc Accumulator
		for seed := range uint64(8) {
			o, err := Simulate(ctx, Spec{Market: m, Seed: seed, Paths: 20_000})
			if err != nil {
				t.Fatal(err)
			}
			acc.Add(o)
		}
		call, put := acc.Prices(m)
		bsCall, bsPut := BlackScholes(m)
		for _, c := range []struct {
			name string
			e    Estimate
			want float64
		}{{"call", call, bsCall}, {"put", put, bsPut}} {
			if c.e.StdErr <= 0 || c.e.StdErr > 0.05*c.want {
				t.Errorf("%+v %s: std err %v out of range", m, c.name, c.e.StdErr)
			}
			if z := (c.e.Price - c.want) / c.e.StdErr; math.Abs(z) > 4 {
				t.Errorf("%+v %s: %.4f ± %.4f is %.1f std err from Black-Scholes %.4f",
					m, c.name, c.e.Price, c.e.StdErr, z, c.want)
			}
			if c.e.Low >= c.e.Price || c.e.High <= c.e.Price {
				t.Errorf("%s: interval [%v, %v] does not contain %v", c.name, c.e.Low, c.e.High, c.e.Price)
			}
		}
	}
}

// A task that runs twice (at-least-once execution) returns the same sums.
func TestSimulateIsDeterministic(t *testing.T) {
	s := Spec{Market: DefaultMarket, Seed: 7, Paths: 10_000}
	a, _ := Simulate(context.Background(), s)
	b, _ := Simulate(context.Background(), s)
	if a != b || a.Pairs != 5_000 {
		t.Fatalf("same spec, different outcomes: %+v %+v", a, b)
	}
}

func TestSpecsSplitThePaths(t *testing.T) {
	cfg := Config{Paths: 1_000_001, Tasks: 7, Seed: 3}
	specs, err := cfg.Specs()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, s := range specs {
		if s.Paths%2 != 0 || s.Paths < 142_856 || s.Paths > 142_858 || s.Market != DefaultMarket {
			t.Errorf("task %d: %+v", i, s)
		}
		if _, err := DecodeSpec(s.Encode()); err != nil {
			t.Errorf("task %d does not decode: %v", i, err)
		}
		total += s.Paths
	}
	if total != 1_000_000 {
		t.Errorf("tasks hold %d paths, want the 1,000,000 of whole pairs", total)
	}
	for _, bad := range []Config{{Paths: 10, Tasks: 6}, {Tasks: 1, Paths: 3 * MaxPaths},
		{Market: Market{S0: -1, K: 1, Sigma: 1, T: 1}}, {Market: Market{S0: 1, K: 1, Sigma: math.NaN(), T: 1}}} {
		if _, err := bad.Specs(); err == nil {
			t.Errorf("Specs(%+v) accepted", bad)
		}
	}
}

func TestDecodeSpecRejects(t *testing.T) {
	for _, bad := range []string{"", "{", "hello world", `{"paths":3,"s0":1,"k":1,"sigma":1,"t":1}`,
		`{"paths":0,"s0":1,"k":1,"sigma":1,"t":1}`, `{"paths":2,"s0":0,"k":1,"sigma":1,"t":1}`,
		`{"paths":2,"s0":1,"k":1,"sigma":1,"t":-1}`, `{"i":1,"j":2,"x":0.5,"y":1}`} {
		if _, err := DecodeSpec([]byte(bad)); err == nil {
			t.Errorf("DecodeSpec(%q) accepted", bad)
		}
	}
}

func TestHandle(t *testing.T) {
	out, err := Handle(context.Background(), worker.Task{ID: "a", Payload: Spec{Market: DefaultMarket, Seed: 1, Paths: 100}.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := DecodeOutcome(out); err != nil || o.Pairs != 50 || o.CallSum <= 0 || o.PutSum2 < 0 {
		t.Fatalf("outcome %+v, %v", o, err)
	}
	if _, err := Handle(context.Background(), worker.Task{ID: "b", Payload: []byte("nope")}); err == nil {
		t.Fatal("bad payload accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Handle(ctx, worker.Task{ID: "c", Payload: Spec{Market: DefaultMarket, Seed: 1, Paths: 1_000_000}.Encode()}); err == nil {
		t.Fatal("a cancelled task ran to the end")
	}
}

func TestEstimateOfNothing(t *testing.T) {
	var acc Accumulator
	if c, _ := acc.Prices(DefaultMarket); !math.IsNaN(c.Price) {
		t.Fatalf("no paths priced at %v", c.Price)
	}
	// Deep out of the money: every payoff 0, variance exactly 0, not NaN.
	acc.Add(Outcome{Pairs: 10})
	if c, _ := acc.Prices(DefaultMarket); c.Price != 0 || c.StdErr != 0 {
		t.Fatalf("all-zero payoffs: %+v", c)
	}
}
