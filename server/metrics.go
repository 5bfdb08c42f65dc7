package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMetricsSessions is how many sessions get per-session queue depth
// series when Config.MetricsSessions is zero.
const DefaultMetricsSessions = 100

// latencyBuckets cover a cache hit on loopback (sub-millisecond) up to a
// forwarded call waiting out an election (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// nodeMetrics holds the instruments a node updates as it works. Everything
// read from the state machine or Raft is collected at scrape time instead
// (see stateCollector and registerRaftGauges), so a scrape always shows the
// state as of now and costs nothing between scrapes.
type nodeMetrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec   // method, code
	latency  *prometheus.HistogramVec // method
	streams  *prometheus.GaugeVec     // kind

	apply           prometheus.Histogram
	snapshotSeconds prometheus.Histogram
	snapshotBytes   prometheus.Gauge
	leaderChanges   prometheus.Counter
}

func newNodeMetrics() *nodeMetrics {
	m := &nodeMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridd_grpc_requests_total",
			Help: "gRPC calls and streams handled by this node, by full method and status code (errors: code != \"OK\").",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gridd_grpc_request_duration_seconds",
			Help:    "Time to handle a gRPC call, or the lifetime of a stream, by full method.",
			Buckets: latencyBuckets,
		}, []string{"method"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gridd_connections",
			Help: "Open gRPC streams on this node by kind: client, dead_letters, worker, worker_updates, shared_data.",
		}, []string{"kind"}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gridd_raft_apply_duration_seconds",
			Help:    "Time from proposing a command until this node applied it (leader only).",
			Buckets: latencyBuckets,
		}),
		snapshotSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gridd_raft_snapshot_duration_seconds",
			Help:    "Time to write a Raft snapshot to disk.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		snapshotBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gridd_raft_snapshot_size_bytes",
			Help: "Size of the last snapshot this node wrote (0 until it writes one).",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridd_raft_leadership_changes_total",
			Help: "Times this node became or stopped being the Raft leader.",
		}),
	}
	for _, k := range streamKinds {
		m.streams.WithLabelValues(k) // export 0 before the first stream
	}
	m.reg.MustRegister(m.requests, m.latency, m.streams, m.apply, m.snapshotSeconds, m.snapshotBytes, m.leaderChanges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// nodeMetrics is the cluster.Observer of its node.

func (m *nodeMetrics) ObserveApply(d time.Duration) { m.apply.Observe(d.Seconds()) }

func (m *nodeMetrics) ObserveSnapshot(d time.Duration, bytes int64) {
	m.snapshotSeconds.Observe(d.Seconds())
	m.snapshotBytes.Set(float64(bytes))
}

func (m *nodeMetrics) LeadershipChanged(bool) { m.leaderChanges.Inc() }

// registerState adds what is read from Raft and the state machine at
// scrape time.
func (s *Server) registerState() {
	reg := s.mx.reg
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("gridd_raft_leader", "1 if this node is the Raft leader.", func() float64 {
		return b2f(s.node.IsLeader())
	})
	gauge("gridd_raft_leader_known", "1 if this node knows a leader (itself or another); 0 during elections and without quorum.", func() float64 {
		id, _ := s.node.Leader()
		return b2f(id != "")
	})
	gauge("gridd_raft_term", "Current Raft term.", func() float64 { return float64(s.node.Status().Term) })
	gauge("gridd_raft_last_log_index", "Index of the last entry in this node's Raft log.", func() float64 { return float64(s.node.Status().LastLogIndex) })
	gauge("gridd_raft_commit_index", "Raft commit index.", func() float64 { return float64(s.node.Status().CommitIndex) })
	gauge("gridd_raft_applied_index", "Raft applied index.", func() float64 { return float64(s.node.Status().AppliedIndex) })
	gauge("gridd_raft_last_snapshot_index", "Log index covered by this node's newest snapshot.", func() float64 {
		return float64(s.node.Status().LastSnapshotIndex)
	})
	gauge("gridd_raft_voters", "Voting members in the Raft configuration as this node knows it.", func() float64 {
		n := 0
		for _, m := range s.node.Status().Members {
			if m.Suffrage == "Voter" {
				n++
			}
		}
		return float64(n)
	})
	reg.MustRegister(&stateCollector{s: s})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// stateCollector reads the sessions and the central cache from the state
// machine at scrape time. Totals are exported unlabelled; per-session
// series are limited to the busiest open sessions (Config.MetricsSessions)
// so that a cluster with many sessions cannot blow up Prometheus.
type stateCollector struct{ s *Server }

var (
	descSessions     = prometheus.NewDesc("gridd_sessions", "Sessions known to the replicated state (open and closed).", nil, nil)
	descSessionsOpen = prometheus.NewDesc("gridd_sessions_open", "Open sessions.", nil, nil)

	descPending     = prometheus.NewDesc("gridd_tasks_pending", "Tasks without an outcome, over all sessions.", nil, nil)
	descRunning     = prometheus.NewDesc("gridd_tasks_running", "Tasks held by a worker right now (leader only; 0 on followers).", nil, nil)
	descResults     = prometheus.NewDesc("gridd_results_unacked", "Results not yet acknowledged by their client, over all sessions.", nil, nil)
	descDeadLetters = prometheus.NewDesc("gridd_dead_letters_unacked", "Dead letters not yet acknowledged, over all sessions.", nil, nil)

	sessionLabels      = []string{"session", "app"}
	descSessionPending = prometheus.NewDesc("gridd_session_tasks_pending", "Tasks without an outcome in an open session (busiest sessions only, see --metrics-sessions).", sessionLabels, nil)
	descSessionRunning = prometheus.NewDesc("gridd_session_tasks_running", "Tasks of an open session held by a worker (leader only).", sessionLabels, nil)
	descSessionResults = prometheus.NewDesc("gridd_session_results_unacked", "Results of an open session not yet acknowledged.", sessionLabels, nil)
	descSessionDead    = prometheus.NewDesc("gridd_session_dead_letters_unacked", "Dead letters of an open session not yet acknowledged.", sessionLabels, nil)

	descSubmitted  = prometheus.NewDesc("gridd_tasks_submitted_total", "Tasks accepted (duplicates not counted).", nil, nil)
	descCompleted  = prometheus.NewDesc("gridd_tasks_completed_total", "Tasks that produced a result.", nil, nil)
	descFailed     = prometheus.NewDesc("gridd_tasks_failed_total", "Failed attempts, retried or dead-lettered.", nil, nil)
	descRetried    = prometheus.NewDesc("gridd_tasks_retried_total", "Failed attempts that were requeued.", nil, nil)
	descTimedOut   = prometheus.NewDesc("gridd_tasks_timed_out_total", "Attempts that ran out their lease.", nil, nil)
	descCancelled  = prometheus.NewDesc("gridd_tasks_cancelled_total", "Tasks cancelled before an outcome.", nil, nil)
	descDeadLetter = prometheus.NewDesc("gridd_tasks_dead_lettered_total", "Tasks that failed every attempt.", nil, nil)

	descSharedLevels      = prometheus.NewDesc("gridd_shared_data_levels", "Shared data levels kept by the central cache.", nil, nil)
	descSharedBytes       = prometheus.NewDesc("gridd_shared_data_bytes", "Payload bytes of the shared data levels kept by the central cache.", nil, nil)
	descSharedUploads     = prometheus.NewDesc("gridd_shared_data_uploads", "Shared data uploads in progress.", nil, nil)
	descSharedUploadBytes = prometheus.NewDesc("gridd_shared_data_upload_bytes", "Bytes received so far by uploads in progress.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descSessionsOpen, descPending, descRunning, descResults, descDeadLetters,
		descSessionPending, descSessionRunning, descSessionResults, descSessionDead,
		descSubmitted, descCompleted, descFailed, descRetried, descTimedOut, descCancelled, descDeadLetter,
		descSharedLevels, descSharedBytes, descSharedUploads, descSharedUploadBytes} {
		ch <- d
	}
}

type sessionDepth struct {
	info    fsm.SessionInfo
	running int
}

func (d sessionDepth) load() uint64 {
	return d.info.Pending + d.info.ResultsUnacked + d.info.DeadLettersUnacked
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	// Sessions are never removed from the state, so sums of their
	// counters only grow, as counters must.
	var (
		total         fsm.SessionInfo
		running, open int
		depths        []sessionDepth
		sessions      = c.s.node.FSM().Sessions()
	)
	for _, info := range sessions {
		total.Pending += info.Pending
		total.ResultsUnacked += info.ResultsUnacked
		total.DeadLettersUnacked += info.DeadLettersUnacked
		total.Submitted += info.Submitted
		total.Completed += info.Completed
		total.Retried += info.Retried
		total.TimedOut += info.TimedOut
		total.Cancelled += info.Cancelled
		total.DeadLettered += info.DeadLettered
		if info.Closed {
			continue
		}
		open++
		r := c.s.disp.Running(info.ID)
		running += r
		depths = append(depths, sessionDepth{info: info, running: r})
	}
	gauge(descSessions, float64(len(sessions)))
	gauge(descSessionsOpen, float64(open))
	gauge(descPending, float64(total.Pending))
	gauge(descRunning, float64(running))
	gauge(descResults, float64(total.ResultsUnacked))
	gauge(descDeadLetters, float64(total.DeadLettersUnacked))
	counter(descSubmitted, total.Submitted)
	counter(descCompleted, total.Completed)
	counter(descFailed, total.Retried+total.DeadLettered)
	counter(descRetried, total.Retried)
	counter(descTimedOut, total.TimedOut)
	counter(descCancelled, total.Cancelled)
	counter(descDeadLetter, total.DeadLettered)

	limit := c.s.cfg.MetricsSessions
	if limit > 0 {
		// The busiest sessions are the ones an operator looks for; ties
		// go by id so that the series set is stable between scrapes.
		sort.Slice(depths, func(i, j int) bool {
			li, lj := depths[i].load(), depths[j].load()
			if li != lj {
				return li > lj
			}
			return depths[i].info.ID < depths[j].info.ID
		})
		for _, d := range depths[:min(limit, len(depths))] {
			gauge(descSessionPending, float64(d.info.Pending), d.info.ID, d.info.App)
			gauge(descSessionRunning, float64(d.running), d.info.ID, d.info.App)
			gauge(descSessionResults, float64(d.info.ResultsUnacked), d.info.ID, d.info.App)
			gauge(descSessionDead, float64(d.info.DeadLettersUnacked), d.info.ID, d.info.App)
		}
	}

	u := c.s.node.FSM().SharedUsage()
	gauge(descSharedLevels, float64(u.Levels))
	gauge(descSharedBytes, float64(u.Bytes))
	gauge(descSharedUploads, float64(u.Uploads))
	gauge(descSharedUploadBytes, float64(u.UploadBytes))
}

// startMetrics serves /metrics (Prometheus), /healthz and, with
// Config.Pprof, /debug/pprof/ on Config.MetricsAddr.
func (s *Server) startMetrics() error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.mx.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.node.Status()
		fmt.Fprintf(w, "ok node=%s state=%s leader=%s\n", st.ID, st.State, st.LeaderID)
	})
	if s.cfg.Pprof {
		// Registered on this mux, not http.DefaultServeMux, so that pprof
		// is reachable only when asked for.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	lis, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s for metrics: %w", s.cfg.MetricsAddr, err)
	}
	s.metricsLis = lis
	s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.metrics.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("metrics listener stopped", "err", err)
		}
	}()
	return nil
}

// MetricsAddr returns the address the metrics listener is bound to, or ""
// when metrics are off.
func (s *Server) MetricsAddr() string {
	if s.metricsLis == nil {
		return ""
	}
	return s.metricsLis.Addr().String()
}
