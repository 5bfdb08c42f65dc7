package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	cases := []struct {
		done, total, failed uint64
		rate                float64
		want                []string
	}{
		{0, 1000, 0, 0, []string{"[>                       ]", "0/1000   0.0%", "ETA ?", "failed 0"}},
		{250, 1000, 2, 50, []string{"[======>                 ]", "250/1000  25.0%", "50.0/s", "ETA 15s", "failed 2"}},
		{1000, 1000, 0, 12345, []string{"[========================]", "1000/1000 100.0%", "12.3k/s", "ETA 0s"}},
		{5, 0, 0, 0, []string{"5/0   0.0%", "ETA ?"}},
	}
	for _, tc := range cases {
		got := progressLine(tc.done, tc.total, tc.failed, tc.rate, 1500*time.Millisecond)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("progressLine(%d, %d, %d, %v) = %q, lacks %q", tc.done, tc.total, tc.failed, tc.rate, got, w)
			}
		}
	}
}

func TestRateMeter(t *testing.T) {
	m := rateMeter{window: 2 * time.Second}
	t0 := time.Unix(1000, 0)
	if m.add(t0, 0); m.perSecond() != 0 {
		t.Fatal("a rate from one sample")
	}
	for i := 1; i <= 10; i++ {
		m.add(t0.Add(time.Duration(i)*time.Second), uint64(i*100))
	}
	// The window keeps the last 2 s (and one sample before it as a base):
	// a steady 100/s.
	if r := m.perSecond(); r != 100 || len(m.samples) > 4 {
		t.Fatalf("rate %v over %d samples, want 100 over at most 4", r, len(m.samples))
	}
}

func TestProgressBarOnlyOnTerminals(t *testing.T) {
	var b bytes.Buffer
	if isTerminal(&b) {
		t.Fatal("a buffer is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Fatal("a regular file is not a terminal")
	}
	off := newProgressBar(&b, false)
	off.update(1, 2, 0, true)
	off.clear()
	off.finish()
	if b.Len() != 0 {
		t.Fatalf("a disabled bar wrote %q", b.String())
	}
	on := newProgressBar(&b, true)
	on.update(1, 2, 0, true)
	on.clear()
	on.update(2, 2, 0, true)
	on.finish()
	if out := b.String(); !strings.HasPrefix(out, "\r[") || !strings.Contains(out, "2/2 100.0%") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("bar output %q", out)
	}
}
