package mc

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	"github.com/gridd/gridd/sdk/worker"
)

func TestSpecRoundTrip(t *testing.T) {
	s := Spec{Seed: 42, Samples: 1000}
	got, err := DecodeSpec(s.Encode())
	if err != nil || got != s {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "{", `{"seed":1,"samples":0}`, `{"seed":1,"samples":-5}`,
		`{"seed":1,"samples":1000000000}`} {
		if _, err := DecodeSpec([]byte(bad)); err == nil {
			t.Errorf("DecodeSpec(%q) accepted", bad)
		}
	}
}

// A task that runs twice gives the same result, and many tasks estimate pi.
func TestEstimateIsDeterministicAndClose(t *testing.T) {
	ctx := context.Background()
	a, _ := Estimate(ctx, Spec{Seed: 7, Samples: 50_000})
	b, _ := Estimate(ctx, Spec{Seed: 7, Samples: 50_000})
	if a != b {
		t.Fatalf("same spec, different outcomes: %+v %+v", a, b)
	}
	var in, n int
	for seed := range uint64(20) {
		o, err := Estimate(ctx, Spec{Seed: seed, Samples: 50_000})
		if err != nil {
			t.Fatal(err)
		}
		in, n = in+o.Inside, n+o.Samples
	}
	if pi := 4 * float64(in) / float64(n); math.Abs(pi-math.Pi) > 0.02 {
		t.Fatalf("pi estimate %v from %d points", pi, n)
	}
}

func TestHandle(t *testing.T) {
	out, err := Handle(context.Background(), worker.Task{ID: "a", Payload: Spec{Seed: 1, Samples: 100}.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	o, err := DecodeOutcome(out)
	if err != nil || o.Samples != 100 || o.Inside < 0 || o.Inside > 100 {
		t.Fatalf("outcome %+v, %v", o, err)
	}
	if _, err := Handle(context.Background(), worker.Task{ID: "b", Payload: []byte("nope")}); err == nil {
		t.Fatal("bad payload accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Handle(ctx, worker.Task{ID: "c", Payload: Spec{Seed: 1, Samples: 1_000_000}.Encode()}); err == nil {
		t.Fatal("a cancelled task ran to the end")
	}
}

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf)
	p.Start(200)
	p.Update(50, "reconnects 1")
	p.Tick()
	p.Println("hello")
	p.Finish()
	out := buf.String()
	for _, want := range []string{"50/200", "25.0%", "reconnects 1", "hello"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "\r") {
		t.Error("carriage returns written to a non-terminal")
	}
}
