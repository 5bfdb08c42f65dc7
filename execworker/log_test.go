package execworker

import (
	"log/slog"
	"sync/atomic"
	"testing"
)

// testLogger logs to the test, dropping lines after it ended (a stopping
// goroutine may still log, and t.Log would then panic).
func testLogger(t *testing.T) *slog.Logger {
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	return slog.New(slog.NewTextHandler(logWriter{t, &done}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type logWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func (w logWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(string(p))
	}
	return len(p), nil
}
