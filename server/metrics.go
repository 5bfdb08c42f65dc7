package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startMetrics serves /metrics (Prometheus) and /healthz. The full metric
// set comes with the observability work; these gauges already tell an
// operator who leads and how far each node has applied the log.
func (s *Server) startMetrics() error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("gridd_raft_leader", "1 if this node is the Raft leader.", func() float64 {
		if s.node.IsLeader() {
			return 1
		}
		return 0
	})
	gauge("gridd_raft_term", "Current Raft term.", func() float64 { return float64(s.node.Status().Term) })
	gauge("gridd_raft_commit_index", "Raft commit index.", func() float64 { return float64(s.node.Status().CommitIndex) })
	gauge("gridd_raft_applied_index", "Raft applied index.", func() float64 { return float64(s.node.Status().AppliedIndex) })
	gauge("gridd_sessions", "Sessions known to the replicated state (open and closed).", func() float64 {
		return float64(len(s.node.FSM().Sessions()))
	})
	gauge("gridd_tasks_pending", "Tasks without an outcome, over all sessions.", func() float64 {
		var n uint64
		for _, info := range s.node.FSM().Sessions() {
			n += info.Pending
		}
		return float64(n)
	})

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.node.Status()
		fmt.Fprintf(w, "ok node=%s state=%s leader=%s\n", st.ID, st.State, st.LeaderID)
	})
	lis, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s for metrics: %w", s.cfg.MetricsAddr, err)
	}
	s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.metrics.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("metrics listener stopped", "err", err)
		}
	}()
	return nil
}
