package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"
	"time"

	"github.com/gridd/gridd/jepsen/history"
)

// bucket is one second of the run.
type bucket struct {
	Second    int     `json:"second"`
	Outcomes  int     `json:"outcomes"`   // results and dead letters delivered
	Submits   int     `json:"submits"`    // submits completed ok
	LatencyMs float64 `json:"latency_ms"` // slowest ok submit completed in it
	Faulted   bool    `json:"faulted"`
}

// timeline buckets the history per second: throughput (outcomes delivered)
// and submit latency (invoke to ok), and marks the seconds under a fault.
func timeline(ops []history.Op, faults []faultRecord) []bucket {
	var end int64
	for _, op := range ops {
		end = max(end, op.Time)
	}
	bs := make([]bucket, int(end/int64(time.Second))+1)
	for i := range bs {
		bs[i].Second = i
	}
	invoked := map[int]int64{}
	for _, op := range ops {
		sec := int(op.Time / int64(time.Second))
		switch {
		case op.F == history.Result || op.F == history.DeadLetter:
			bs[sec].Outcomes++
		case op.F == history.Submit && op.Type == history.Invoke:
			invoked[op.Process] = op.Time
		case op.F == history.Submit && op.Type == history.OK:
			bs[sec].Submits++
			bs[sec].LatencyMs = max(bs[sec].LatencyMs, float64(op.Time-invoked[op.Process])/1e6)
		}
	}
	for _, f := range faults {
		if len(f.Nodes) == 0 {
			continue
		}
		stop := f.End
		if stop == 0 {
			stop = float64(len(bs))
		}
		for s := int(f.Start); s < len(bs) && float64(s) < stop; s++ {
			bs[s].Faulted = true
		}
	}
	return bs
}

// writeCSV writes the timeline as CSV, the numbers behind the plot.
func writeCSV(w io.Writer, bs []bucket) error {
	var b strings.Builder
	b.WriteString("second,outcomes,submits,max_submit_latency_ms,faulted\n")
	for _, x := range bs {
		fmt.Fprintf(&b, "%d,%d,%d,%.1f,%v\n", x.Second, x.Outcomes, x.Submits, x.LatencyMs, x.Faulted)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writePNG draws two panels over time, seconds under a fault shaded red:
// top, outcomes delivered per second (blue bars); bottom, the slowest
// submit latency of each second (orange bars, on a log scale so a 5 ms second still shows next to a 5 s
// one, clipped at 10 s).
// There is no text (the standard library has no fonts): timeline.csv has
// the numbers and summary.json the fault intervals.
func writePNG(w io.Writer, bs []bucket) error {
	const panelH, gap = 200, 20
	width := max(400, min(4*len(bs), 2400))
	img := image.NewRGBA(image.Rect(0, 0, width, 2*panelH+gap))
	fill(img, img.Bounds(), color.RGBA{255, 255, 255, 255})
	colW := float64(width) / float64(max(1, len(bs)))
	maxOut := 1
	maxLat := 1.0
	for _, b := range bs {
		maxOut = max(maxOut, b.Outcomes)
		maxLat = max(maxLat, min(b.LatencyMs, 10000))
	}
	for _, b := range bs {
		x0, x1 := int(float64(b.Second)*colW), int(float64(b.Second+1)*colW)
		if x1 <= x0 {
			x1 = x0 + 1
		}
		if b.Faulted {
			shade := color.RGBA{255, 210, 210, 255}
			fill(img, image.Rect(x0, 0, x1, panelH), shade)
			fill(img, image.Rect(x0, panelH+gap, x1, 2*panelH+gap), shade)
		}
		h := int(float64(panelH-10) * float64(b.Outcomes) / float64(maxOut))
		fill(img, image.Rect(x0, panelH-h, x1, panelH), color.RGBA{40, 90, 200, 255})
		h = int(float64(panelH-10) * math.Log1p(min(b.LatencyMs, 10000)) / math.Log1p(maxLat))
		fill(img, image.Rect(x0, 2*panelH+gap-h, x1, 2*panelH+gap), color.RGBA{230, 130, 20, 255})
	}
	fill(img, image.Rect(0, panelH, width, panelH+1), color.RGBA{0, 0, 0, 255})
	fill(img, image.Rect(0, 2*panelH+gap-1, width, 2*panelH+gap), color.RGBA{0, 0, 0, 255})
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// rate is the throughput over some seconds of a run.
type rate struct {
	Seconds int `json:"seconds"`
	// PerSecond is the mean of outcomes delivered per second.
	PerSecond float64 `json:"outcomes_per_s"`
	// Stalled counts the seconds in which no outcome was delivered.
	Stalled int `json:"stalled_seconds"`
}

// faultRates is the throughput under each kind of fault (the seconds a
// fault of that kind was held), and under none ("none": the seconds
// without a fault from the start to the last heal), so a run shows what
// each fault costs.
func faultRates(bs []bucket, faults []faultRecord) map[string]rate {
	type acc struct{ secs, outcomes, stalled int }
	by := map[string]*acc{}
	add := func(k string, b bucket) {
		a := by[k]
		if a == nil {
			a = &acc{}
			by[k] = a
		}
		a.secs++
		a.outcomes += b.Outcomes
		if b.Outcomes == 0 {
			a.stalled++
		}
	}
	last := 0
	for _, f := range faults {
		if len(f.Nodes) == 0 || f.End == 0 {
			continue
		}
		for s := int(f.Start); s < len(bs) && float64(s) < f.End; s++ {
			add(f.Kind, bs[s])
		}
		last = max(last, int(f.End))
	}
	for s := 0; s < min(last, len(bs)); s++ {
		if !bs[s].Faulted {
			add("none", bs[s])
		}
	}
	out := make(map[string]rate, len(by))
	for k, a := range by {
		out[k] = rate{Seconds: a.secs, PerSecond: float64(a.outcomes) / float64(a.secs), Stalled: a.stalled}
	}
	return out
}
