package main

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/leakcheck"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// At the true weights the gradient is only noise; far from them it is not.
func TestGradientVanishesAtTheTruth(t *testing.T) {
	s := Shard{Seed: 7, Samples: 20000, Dim: 3}
	at, err := s.Compute(TrueWeights(3))
	if err != nil {
		t.Fatal(err)
	}
	off, _ := s.Compute([]float64{0, 0, 0})
	norm := func(g Gradient) float64 {
		n := 0.0
		for _, v := range g.Sum {
			n += (v / float64(g.Samples)) * (v / float64(g.Samples))
		}
		return math.Sqrt(n)
	}
	if norm(at) > 0.01 || norm(off) < 1 {
		t.Fatalf("gradient norm %g at the truth, %g at zero", norm(at), norm(off))
	}
	if _, err := s.Compute([]float64{1}); err == nil {
		t.Fatal("weights of the wrong dimension were accepted")
	}
}

// The whole pattern on an in-process cluster: the client and two workers
// converge to the known weights, one shared-data level per iteration.
func TestDescendOnACluster(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, stopWorkers := context.WithCancel(ctx)
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- worker.Run(wctx, worker.Options{Addrs: c.Addrs(), Concurrency: 2}, Handle) }()
	}
	defer func() {
		stopWorkers()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
	}()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cfg := Config{Dim: 3, Shards: 8, Samples: 2000, Rate: 0.3, Tolerance: 1e-2, MaxIterations: 60, Seed: 1}
	res, err := Descend(ctx, cl, cfg, func(it Iteration) {
		t.Logf("level %d loss %.5f |gradient| %.2e %v", it.Level, it.Loss, it.GradNorm, it.Took)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Converged {
		t.Fatalf("did not converge in %d iterations", len(res.Iterations))
	}
	for i, w := range TrueWeights(3) {
		if math.Abs(res.Weights[i]-w) > 0.05 {
			t.Fatalf("fitted %v, want within 0.05 of %v", res.Weights, TrueWeights(3))
		}
	}
}

func TestClientFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"client", "--dim", "0"}, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "--dim 0") {
		t.Fatalf("--dim 0: exit %d, stderr %q", code, errOut.String())
	}
}
