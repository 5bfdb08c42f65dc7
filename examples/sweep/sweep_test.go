package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/leakcheck"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/worker"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestGridFindsTheKnownMinimum(t *testing.T) {
	g := Grid{XMin: -2, XMax: 2, NX: 41, YMin: -1, YMax: 3, NY: 41}
	pts := g.Points()
	if len(pts) != 41*41 || pts[0].X != -2 || pts[len(pts)-1].X != 2 || pts[len(pts)-1].Y != 3 {
		t.Fatalf("grid ends: %+v .. %+v (%d points)", pts[0], pts[len(pts)-1], len(pts))
	}
	for k := range pts {
		pts[k].F = Rosenbrock(pts[k].X, pts[k].Y)
	}
	best := Best(pts, 3)
	if b := best[0]; b.X != 1 || b.Y != 1 || b.F != 0 {
		t.Fatalf("best %+v, want f(1, 1) = 0", b)
	}
	if best[1].F <= 0 || best[2].F < best[1].F {
		t.Fatalf("not sorted: %+v", best)
	}
	// A grid without (1, 1) still lands within one step of it.
	g = Grid{XMin: -1.93, XMax: 2.11, NX: 37, YMin: -0.97, YMax: 2.9, NY: 29}
	pts = g.Points()
	for k := range pts {
		pts[k].F = Rosenbrock(pts[k].X, pts[k].Y)
	}
	b := Best(pts, 1)[0]
	if dx, dy := (g.XMax-g.XMin)/float64(g.NX-1), (g.YMax-g.YMin)/float64(g.NY-1); math.Abs(b.X-1) > 2*dx || math.Abs(b.Y-1) > 2*dy {
		t.Fatalf("best %+v is far from (1, 1)", b)
	}
}

func TestBestIsIndependentOfOrder(t *testing.T) {
	pts := []Point{{I: 1, F: 2}, {I: 2, J: 1, F: 1}, {I: 0, J: 1, F: 1}, {I: 3, F: 5}}
	got := Best(pts, 10)
	if len(got) != 4 || got[0].I != 0 || got[1].I != 2 || got[2].I != 1 {
		t.Fatalf("Best = %+v", got)
	}
	if pts[0].I != 1 {
		t.Fatal("Best reordered its input")
	}
}

func TestGridValidate(t *testing.T) {
	for _, bad := range []Grid{{}, {XMin: 1, XMax: 0, NX: 3, YMin: 0, YMax: 1, NY: 3},
		{XMin: 0, XMax: 1, NX: 1, YMin: 0, YMax: 1, NY: 3}, {XMin: 0, XMax: 1, NX: 2000, YMin: 0, YMax: 1, NY: 2000},
		{XMin: math.Inf(-1), XMax: 1, NX: 3, YMin: 0, YMax: 1, NY: 3}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestHandle(t *testing.T) {
	out, err := Handle(context.Background(), worker.Task{Payload: []byte(`{"i":3,"j":4,"x":0,"y":1}`)})
	var p Point
	if err != nil || json.Unmarshal(out, &p) != nil || p.I != 3 || p.J != 4 || p.F != 101 {
		t.Fatalf("Handle: %s, %v", out, err)
	}
	if _, err := Handle(context.Background(), worker.Task{Payload: []byte("text")}); err == nil {
		t.Fatal("bad payload accepted")
	}
}

// The command end to end against a real one-node cluster.
func TestWorkerAndClient(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	addr := strings.Join(c.Addrs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wctx, stopWorker := context.WithCancel(ctx)
	var wlog bytes.Buffer // read only after the worker returned
	workerDone := make(chan int, 1)
	go func() {
		workerDone <- run(wctx, []string{"worker", "--addr", addr, "--log-level", "warn"}, &wlog, &wlog)
	}()

	var out, errs bytes.Buffer
	code := run(ctx, []string{"client", "--addr", addr, "--nx", "21", "--ny", "21", "--top", "5"}, &out, &errs)
	stopWorker()
	if wcode := <-workerDone; wcode != 0 {
		t.Errorf("worker exited %d: %s", wcode, wlog.String())
	}
	if code != 0 {
		t.Fatalf("client exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"swept 441 points", "best point: f(1.0000, 1.0000) = 0 ", "   5  "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errs.String(), "100%  441/441 points") {
		t.Errorf("no final progress line:\n%s", errs.String())
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errs bytes.Buffer
	for _, args := range [][]string{nil, {"bogus"}, {"client", "--nx", "1"}, {"client", "--x-min", "3"}} {
		if code := run(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

// Another example's task fails instead of being evaluated at (0, 0).
func TestHandleRejectsForeignTasks(t *testing.T) {
	for _, p := range []string{`{"s0":100,"k":100,"seed":1,"paths":2}`, `{"x":1,"y":1,"extra":true}`} {
		if out, err := Handle(context.Background(), worker.Task{Payload: []byte(p)}); err == nil {
			t.Errorf("Handle(%s) = %s, want an error", p, out)
		}
	}
}
