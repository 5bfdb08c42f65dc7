package main

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/jepsen/history"
)

func TestTimeline(t *testing.T) {
	s := int64(time.Second)
	ops := []history.Op{
		{Process: 1, Type: history.Invoke, F: history.Submit, Time: 0},
		{Process: 1, Type: history.OK, F: history.Submit, Time: s / 2},
		{Process: 1, Type: history.OK, F: history.Result, Time: s + 1},
		{Process: 1, Type: history.OK, F: history.DeadLetter, Time: s + 2},
		{Process: 1, Type: history.OK, F: history.Result, Time: 3 * s},
	}
	bs := timeline(ops, []faultRecord{{Kind: "kill-leader", Nodes: []string{"n1"}, Start: 1.2, End: 2.5},
		{Kind: "pause-leader", Start: 0}}) // not injected: not shaded
	if len(bs) != 4 || bs[0].Submits != 1 || bs[0].LatencyMs != 500 || bs[1].Outcomes != 2 || bs[3].Outcomes != 1 {
		t.Fatalf("buckets %+v", bs)
	}
	if bs[0].Faulted || !bs[1].Faulted || !bs[2].Faulted || bs[3].Faulted {
		t.Fatalf("fault shading %+v", bs)
	}
	rates := faultRates(bs, []faultRecord{{Kind: "kill-leader", Nodes: []string{"n1"}, Start: 1.2, End: 2.5},
		{Kind: "pause-leader", Start: 0}})
	if r := rates["kill-leader"]; r.Seconds != 2 || r.PerSecond != 1 || r.Stalled != 1 {
		t.Fatalf("kill-leader rate %+v (all %+v)", r, rates)
	}
	if r := rates["none"]; r.Seconds != 1 || r.PerSecond != 0 || r.Stalled != 1 {
		t.Fatalf("unfaulted rate %+v (all %+v)", r, rates)
	}
	if _, ok := rates["pause-leader"]; ok {
		t.Fatalf("a fault never injected has a rate: %+v", rates)
	}
	var csv, img bytes.Buffer
	if err := writeCSV(&csv, bs); err != nil || strings.Count(csv.String(), "\n") != 5 {
		t.Fatalf("csv %v:\n%s", err, csv.String())
	}
	if err := writePNG(&img, bs); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&img); err != nil {
		t.Fatalf("png does not decode: %v", err)
	}
}
