package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// Point is a task's payload: one point of the grid. Its result is the
// same point with F filled in.
type Point struct {
	I int     `json:"i"` // grid indexes, to check a result against its task
	J int     `json:"j"`
	X float64 `json:"x"`
	Y float64 `json:"y"`
	F float64 `json:"f"`
}

// Rosenbrock is the function swept: a long curved valley whose minimum,
// 0 at (1, 1), local searches find slowly. A grid finds it wherever the
// grid has a point.
func Rosenbrock(x, y float64) float64 {
	return (1-x)*(1-x) + 100*(y-x*x)*(y-x*x)
}

// Grid is a rectangular grid over [XMin, XMax] x [YMin, YMax], with NX and
// NY points along each axis, ends included.
type Grid struct {
	XMin, XMax float64
	NX         int
	YMin, YMax float64
	NY         int
}

// MaxPoints bounds a sweep: one task per point.
const MaxPoints = 1_000_000

// Validate rejects grids that are empty, inverted or too large.
func (g Grid) Validate() error {
	for _, v := range []float64{g.XMin, g.XMax, g.YMin, g.YMax} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("sweep: grid bounds must be finite")
		}
	}
	if g.NX < 2 || g.NY < 2 || g.XMin >= g.XMax || g.YMin >= g.YMax {
		return fmt.Errorf("sweep: want at least 2 points per axis and min < max (got x %g..%g/%d, y %g..%g/%d)",
			g.XMin, g.XMax, g.NX, g.YMin, g.YMax, g.NY)
	}
	if g.NX*g.NY > MaxPoints {
		return fmt.Errorf("sweep: %d points is over the limit of %d", g.NX*g.NY, MaxPoints)
	}
	return nil
}

// Points lists the grid's points, row after row. Coordinates are computed
// as min + i*(max-min)/(n-1), not by adding a step, so that they do not
// drift and a grid over [-2, 2] with 41 points holds 1 exactly.
func (g Grid) Points() []Point {
	pts := make([]Point, 0, g.NX*g.NY)
	for j := range g.NY {
		for i := range g.NX {
			pts = append(pts, Point{I: i, J: j,
				X: g.XMin + float64(i)*(g.XMax-g.XMin)/float64(g.NX-1),
				Y: g.YMin + float64(j)*(g.YMax-g.YMin)/float64(g.NY-1)})
		}
	}
	return pts
}

// Best returns the n points with the lowest F, lowest first; ties go to
// the lower row, then column, so the answer does not depend on the order
// results arrived in.
func Best(pts []Point, n int) []Point {
	s := slices.Clone(pts)
	slices.SortFunc(s, func(a, b Point) int {
		if a.F != b.F {
			if a.F < b.F {
				return -1
			}
			return 1
		}
		if a.J != b.J {
			return a.J - b.J
		}
		return a.I - b.I
	})
	return s[:min(n, len(s))]
}

// Handle is the worker's handler: a point in, the point with its value out.
func Handle(_ context.Context, t worker.Task) ([]byte, error) {
	var p Point
	// Strict, so that another example's task fails here instead of
	// being evaluated at (0, 0).
	dec := json.NewDecoder(bytes.NewReader(t.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("sweep: bad task payload (not a sweep task?): %w", err)
	}
	p.F = Rosenbrock(p.X, p.Y)
	return json.Marshal(p)
}

func taskID(p Point) string { return fmt.Sprintf("pt-%04d-%04d", p.J, p.I) }

// Sweep submits one task per grid point, collects the values and returns
// every point with its value, in grid order. It fails if a task was
// dead-lettered or a result does not match its task.
func Sweep(ctx context.Context, c *client.Client, g Grid, progress func(done, total int)) ([]Point, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	pts := g.Points()
	s, err := c.CreateSession(ctx, nil, client.WithApp("sweep"))
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	defer func() { _ = s.Detach() }()
	tasks := make([]client.Task, len(pts))
	index := make(map[string]int, len(pts))
	for k, p := range pts {
		b, _ := json.Marshal(p) // numbers only: always marshals
		tasks[k] = client.Task{ID: taskID(p), Payload: b}
		index[tasks[k].ID] = k
	}
	// One Submit: the SDK splits it into batches and returns once every
	// task is durable. It runs beside the collection so that the first
	// results are read while later batches are still being sent.
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	submitErr := make(chan error, 1)
	go func() {
		_, err := s.Submit(subCtx, tasks)
		submitErr <- err
	}()
	got := make([]bool, len(pts))
	done := 0
	results, dead := s.Results(), s.DeadLetters()
	for done < len(pts) {
		select {
		case r, ok := <-results:
			if !ok {
				return nil, errors.New("the session's results ended early")
			}
			k, known := index[r.TaskID]
			var p Point
			if !known || json.Unmarshal(r.Payload, &p) != nil || p.I != pts[k].I || p.J != pts[k].J {
				return nil, fmt.Errorf("result of task %q does not match it: %q", r.TaskID, r.Payload)
			}
			if got[k] {
				return nil, fmt.Errorf("task %q delivered twice", r.TaskID)
			}
			got[k], pts[k].F = true, p.F
			done++
			if progress != nil {
				progress(done, len(pts))
			}
		case err := <-submitErr:
			if err != nil {
				return nil, fmt.Errorf("submit: %w", err)
			}
			submitErr = nil
		case d, ok := <-dead:
			if !ok {
				dead = nil
				continue
			}
			return nil, fmt.Errorf("task %s dead-lettered after %d attempts: %v", d.TaskID, d.Attempts, d.Errors)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for results (%d/%d in): %w", done, len(pts), ctx.Err())
		}
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if err := s.Close(cctx); err != nil {
		return pts, fmt.Errorf("close session: %w", err)
	}
	return pts, nil
}

// printTable writes the best points.
func printTable(w io.Writer, best []Point) {
	fmt.Fprintf(w, "%4s  %10s  %10s  %14s\n", "rank", "x", "y", "f(x, y)")
	for k, p := range best {
		fmt.Fprintf(w, "%4d  %10.4f  %10.4f  %14.6g\n", k+1, p.X, p.Y, p.F)
	}
}
