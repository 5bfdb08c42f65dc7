package execworker

import "errors"

// errOutputLimit stops the copy of stdout: exec then closes the pipe, so a
// command that goes on writing gets EPIPE (or SIGPIPE) and ends early.
var errOutputLimit = errors.New("output limit exceeded")

// cappedBuffer keeps stdout up to max bytes and remembers whether the
// command tried to write more. exec writes it from one goroutine and Wait
// returns after that goroutine, so it needs no lock.
type cappedBuffer struct {
	max      int64
	buf      []byte
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if int64(len(b.buf))+int64(len(p)) > b.max {
		b.overflow = true
		return 0, errOutputLimit
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte { return b.buf }

// tailBuffer keeps the last max bytes written to it: the end of stderr is
// where programs explain why they failed, and a chatty one must not grow
// the worker's memory without bound.
type tailBuffer struct {
	max       int
	buf       []byte
	truncated bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p = p[len(p)-b.max:]
		b.truncated = true
	}
	b.buf = append(b.buf, p...)
	// Trim only once the buffer doubles, so the copy is amortised.
	if len(b.buf) > 2*b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
		b.truncated = true
	}
	return n, nil
}

// String is the tail, marked with "..." when earlier bytes were dropped.
func (b *tailBuffer) String() string {
	s, truncated := b.buf, b.truncated
	if len(s) > b.max {
		s, truncated = s[len(s)-b.max:], true
	}
	if truncated {
		return "..." + string(s)
	}
	return string(s)
}
