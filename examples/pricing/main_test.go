package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/leakcheck"
	"github.com/gridd/gridd/internal/testcluster"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// The command end to end: a worker and a client against a real one-node
// cluster, over real gRPC.
func TestWorkerAndClient(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	addr := strings.Join(c.Addrs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	wctx, stopWorker := context.WithCancel(ctx)
	var wlog bytes.Buffer // read only after the worker returned
	workerDone := make(chan int, 1)
	go func() {
		workerDone <- run(wctx, []string{"worker", "--addr", addr, "--concurrency", "2", "--log-level", "warn"}, &wlog, &wlog)
	}()

	var out, errs bytes.Buffer
	code := run(ctx, []string{"client", "--addr", addr, "--paths", "400000", "--tasks", "40", "--batch", "16", "--seed", "5"}, &out, &errs)
	stopWorker()
	if wcode := <-workerDone; wcode != 0 {
		t.Errorf("worker exited %d: %s", wcode, wlog.String())
	}
	if code != 0 {
		t.Fatalf("client exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"results            40\n", "duplicates         0 ", "missing            0 ", "paths              400000 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errs.String(), "100%  40/40 results") {
		t.Errorf("no final progress line in stderr:\n%s", errs.String())
	}
	// "call price 10.4xxx (std err 0.0yyy ...); Black-Scholes 10.4506, +z std err"
	m := regexp.MustCompile(`call price +(\S+) .*Black-Scholes 10\.4506, ([-+]\S+) std err`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no call price line:\n%s", out.String())
	}
	if z, err := strconv.ParseFloat(m[2], 64); err != nil || z < -4 || z > 4 {
		t.Errorf("call price %s is %s std errs from the closed form", m[1], m[2])
	}
}

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	var out, errs bytes.Buffer
	for _, args := range [][]string{nil, {"bogus"}, {"client", "--sigma", "-1"}, {"client", "--paths", "10", "--tasks", "100"},
		{"worker", "--log-level", "loud"}} {
		if code := run(ctx, args, &out, &errs); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
