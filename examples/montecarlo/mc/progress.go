package mc

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress draws a one-line progress bar. On a terminal the line is
// redrawn in place; elsewhere (a log file, a pipe) a plain line is written
// every few seconds. Messages printed through it do not garble the bar.
type Progress struct {
	w        io.Writer
	terminal bool

	mu        sync.Mutex
	total     int
	done      int
	extra     string
	start     time.Time
	lastLine  time.Time
	lastDone  int
	lastTime  time.Time
	rate      float64 // tasks/s, smoothed
	drawn     bool
	finalized bool
}

// NewProgress returns a bar writing to w (os.Stderr when nil).
func NewProgress(w io.Writer) *Progress {
	if w == nil {
		w = os.Stderr
	}
	p := &Progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// Start sets the total and the start time.
func (p *Progress) Start(total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total, p.start, p.lastTime = total, time.Now(), time.Now()
}

// Update records progress; extra is shown after the figures.
func (p *Progress) Update(done int, extra string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.extra = done, extra
}

// Tick refreshes the smoothed rate and redraws; call it a few times a second.
func (p *Progress) Tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if dt := now.Sub(p.lastTime).Seconds(); dt > 0 {
		inst := float64(p.done-p.lastDone) / dt
		if p.rate == 0 {
			p.rate = inst
		} else {
			p.rate = 0.7*p.rate + 0.3*inst
		}
		p.lastDone, p.lastTime = p.done, now
	}
	if p.terminal {
		fmt.Fprint(p.w, "\r"+p.lineLocked()+"\x1b[K")
		p.drawn = true
	} else if now.Sub(p.lastLine) >= 5*time.Second {
		fmt.Fprintln(p.w, p.lineLocked())
		p.lastLine = now
	}
}

func (p *Progress) lineLocked() string {
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = float64(p.done) / float64(p.total)
	}
	filled := min(int(frac*width), width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	if filled < width {
		bar = bar[:filled] + ">" + bar[filled+1:]
	}
	eta := "--"
	if p.rate > 0 && p.done < p.total {
		eta = time.Duration(float64(p.total-p.done) / p.rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %d/%d %5.1f%% %6.0f tasks/s ETA %-6s %s",
		bar, p.done, p.total, 100*frac, p.rate, eta, p.extra)
}

// Println prints a message on its own line above the bar.
func (p *Progress) Println(a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintln(p.w, a...)
	if p.terminal && p.drawn && !p.finalized {
		fmt.Fprint(p.w, p.lineLocked()+"\x1b[K")
	}
}

// Finish draws the last state and ends the line.
func (p *Progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finalized {
		return
	}
	p.finalized = true
	if p.terminal {
		fmt.Fprint(p.w, "\r"+p.lineLocked()+"\x1b[K\n")
	} else {
		fmt.Fprintln(p.w, p.lineLocked())
	}
}
