package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// isTerminal reports whether w is a character device (a terminal). Only an
// *os.File can be one; test buffers and pipes never are. It uses the file
// mode rather than golang.org/x/term, which gridd does not depend on.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar redraws one line on a terminal: done / total, a bar, rate,
// ETA and failures. A disabled bar does nothing, so callers need no checks.
// It is safe for concurrent use.
type progressBar struct {
	w       io.Writer
	enabled bool

	mu    sync.Mutex
	start time.Time
	last  time.Time // last redraw
	shown bool      // a line is on screen
	width int       // length of the line on screen
	rate  rateMeter
	// line formats what the bar shows; progressLine (tasks) unless set,
	// bytesLine for transfers.
	line func(done, total, failed uint64, rate float64, elapsed time.Duration) string
}

// minRedraw keeps the bar from costing more than the work it reports.
const minRedraw = 100 * time.Millisecond

func newProgressBar(w io.Writer, enabled bool) *progressBar {
	now := time.Now()
	return &progressBar{w: w, enabled: enabled, start: now, rate: rateMeter{window: 3 * time.Second}}
}

// update redraws the bar if enough time passed since the last redraw, or
// always when force is set.
func (p *progressBar) update(done, total, failed uint64, force bool) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(p.last) < minRedraw {
		return
	}
	p.last = now
	p.rate.add(now, done)
	format := p.line
	if format == nil {
		format = progressLine
	}
	line := format(done, total, failed, p.rate.perSecond(), time.Since(p.start))
	pad := ""
	if n := p.width - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
	p.shown, p.width = true, len(line)
}

// clear removes the bar so other output starts on a clean line; the next
// update draws it again.
func (p *progressBar) clear() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.shown, p.width = false, 0
		p.last = time.Time{}
	}
}

// finish leaves the last drawn line on screen and moves past it.
func (p *progressBar) finish() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown, p.width = false, 0
	}
}

// progressLine is "[=====>    ]  1234/5000  24.7%  812/s  ETA 4s  failed 2".
func progressLine(done, total, failed uint64, rate float64, elapsed time.Duration) string {
	bar, frac, eta := barParts(done, total, rate)
	return fmt.Sprintf("[%s] %d/%d %5.1f%%  %s/s  ETA %s  elapsed %s  failed %d",
		bar, done, total, frac*100, humanRate(rate), eta, roundDuration(elapsed), failed)
}

// barParts is what every bar shows: the bar itself, the fraction done and
// the ETA at rate.
func barParts(done, total uint64, rate float64) (bar string, frac float64, eta string) {
	const width = 24
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	filled := int(frac * width)
	bar = strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	eta = "?"
	switch {
	case total > 0 && done >= total:
		eta = "0s"
	case rate > 0 && total > done:
		eta = roundDuration(time.Duration(float64(total-done) / rate * float64(time.Second))).String()
	}
	return bar, frac, eta
}

// roundDuration drops the digits a person does not read.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func humanRate(r float64) string {
	switch {
	case r >= 10_000:
		return fmt.Sprintf("%.1fk", r/1000)
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	default:
		return fmt.Sprintf("%.1f", r)
	}
}

// rateMeter measures a counter's rate over a sliding window, so the rate
// and ETA follow the current speed rather than the average since start.
type rateMeter struct {
	window  time.Duration
	samples []rateSample
}

type rateSample struct {
	at time.Time
	n  uint64
}

func (m *rateMeter) add(at time.Time, n uint64) {
	m.samples = append(m.samples, rateSample{at, n})
	// Keep one sample older than the window as the base of the rate.
	i := 0
	for i+1 < len(m.samples) && at.Sub(m.samples[i+1].at) >= m.window {
		i++
	}
	m.samples = m.samples[i:]
}

// perSecond is the rate between the oldest and newest samples; 0 until two
// samples are far enough apart to mean something.
func (m *rateMeter) perSecond() float64 {
	if len(m.samples) < 2 {
		return 0
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	dt := last.at.Sub(first.at)
	if dt < 50*time.Millisecond || last.n < first.n {
		return 0
	}
	return float64(last.n-first.n) / dt.Seconds()
}
