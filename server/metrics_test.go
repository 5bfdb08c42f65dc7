package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// scrape fetches and parses one node's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics of %s: %v", addr, err)
	}
	return fams
}

// value sums the samples of a family whose labels include want; histograms
// count observations.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	var sum float64
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// lockedBuffer collects the logs of every node.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMetricsScrape runs work through a 3-node cluster and checks that
// every documented metric is exposed with its type and help, and that the
// values move with the work.
func TestMetricsScrape(t *testing.T) {
	logs := &lockedBuffer{}
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(i int, cfg *server.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
		cfg.Pprof = i == 0
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	c.WaitConverged()
	lead := c.WaitLeader()
	follower := (lead + 1) % 3
	leaderAddr := c.Nodes[lead].Srv.MetricsAddr()

	before := scrape(t, leaderAddr)
	want := map[string]dto.MetricType{
		"gridd_grpc_requests_total":            dto.MetricType_COUNTER,
		"gridd_grpc_request_duration_seconds":  dto.MetricType_HISTOGRAM,
		"gridd_connections":                    dto.MetricType_GAUGE,
		"gridd_raft_leader":                    dto.MetricType_GAUGE,
		"gridd_raft_leader_known":              dto.MetricType_GAUGE,
		"gridd_raft_term":                      dto.MetricType_GAUGE,
		"gridd_raft_last_log_index":            dto.MetricType_GAUGE,
		"gridd_raft_commit_index":              dto.MetricType_GAUGE,
		"gridd_raft_applied_index":             dto.MetricType_GAUGE,
		"gridd_raft_last_snapshot_index":       dto.MetricType_GAUGE,
		"gridd_raft_voters":                    dto.MetricType_GAUGE,
		"gridd_raft_apply_duration_seconds":    dto.MetricType_HISTOGRAM,
		"gridd_raft_snapshot_duration_seconds": dto.MetricType_HISTOGRAM,
		"gridd_raft_snapshot_size_bytes":       dto.MetricType_GAUGE,
		"gridd_raft_leadership_changes_total":  dto.MetricType_COUNTER,
		"gridd_sessions":                       dto.MetricType_GAUGE,
		"gridd_sessions_open":                  dto.MetricType_GAUGE,
		"gridd_tasks_pending":                  dto.MetricType_GAUGE,
		"gridd_tasks_running":                  dto.MetricType_GAUGE,
		"gridd_results_unacked":                dto.MetricType_GAUGE,
		"gridd_dead_letters_unacked":           dto.MetricType_GAUGE,
		"gridd_tasks_submitted_total":          dto.MetricType_COUNTER,
		"gridd_tasks_completed_total":          dto.MetricType_COUNTER,
		"gridd_tasks_failed_total":             dto.MetricType_COUNTER,
		"gridd_tasks_retried_total":            dto.MetricType_COUNTER,
		"gridd_tasks_timed_out_total":          dto.MetricType_COUNTER,
		"gridd_tasks_cancelled_total":          dto.MetricType_COUNTER,
		"gridd_tasks_dead_lettered_total":      dto.MetricType_COUNTER,
		"gridd_shared_data_levels":             dto.MetricType_GAUGE,
		"gridd_shared_data_bytes":              dto.MetricType_GAUGE,
		"gridd_shared_data_uploads":            dto.MetricType_GAUGE,
		"gridd_shared_data_upload_bytes":       dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		f := before[name]
		if f == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
	// docs/metrics.md stays true: everything it lists for gridd nodes is
	// exported (per-session series appear with the first session, below).
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `gridd_") {
			continue
		}
		name := strings.Trim(strings.Fields(line)[1], "`")
		if _, ok := want[name]; !ok && !strings.HasPrefix(name, "gridd_session_") {
			t.Errorf("docs/metrics.md lists %s, which the test does not check", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if v := value(before, "gridd_raft_leader"); v != 1 {
		t.Errorf("leader reports gridd_raft_leader=%v", v)
	}
	if v := value(scrape(t, c.Nodes[follower].Srv.MetricsAddr()), "gridd_raft_leader"); v != 0 {
		t.Errorf("follower reports gridd_raft_leader=%v", v)
	}
	if v := value(before, "gridd_raft_voters"); v != 3 {
		t.Errorf("gridd_raft_voters=%v, want 3", v)
	}
	if v := value(before, "gridd_raft_leadership_changes_total"); v < 1 {
		t.Errorf("leader counted %v leadership changes", v)
	}

	const n = 50
	release := make(chan struct{})
	startWorkers(t, c.Addrs(), 1, func(ctx context.Context, tk worker.Task) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return tk.Payload, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{})
	if err != nil {
		t.Fatal(err)
	}
	var tasks []client.Task
	for i := range n {
		tasks = append(tasks, client.Task{ID: fmt.Sprint(i), Payload: []byte("x")})
	}
	if _, err := sess.Submit(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	// While the worker holds tasks, the session shows up with its depths.
	c.WaitFor("running tasks in the metrics", 30*time.Second, func() bool {
		m := scrape(t, leaderAddr)
		return value(m, "gridd_session_tasks_running", "session", sess.ID()) > 0 &&
			value(m, "gridd_session_tasks_pending", "session", sess.ID()) == n &&
			value(m, "gridd_connections", "kind", "worker") >= 1 &&
			value(m, "gridd_connections", "kind", "client") >= 1
	})
	m := scrape(t, leaderAddr)
	for _, name := range []string{"gridd_session_tasks_pending", "gridd_session_tasks_running", "gridd_session_results_unacked", "gridd_session_dead_letters_unacked"} {
		if f := m[name]; f == nil || f.GetType() != dto.MetricType_GAUGE || f.GetHelp() == "" {
			t.Errorf("%s missing, untyped or without help", name)
		}
	}
	close(release)
	got := 0
	for got < n {
		select {
		case <-sess.Results():
			got++
		case <-ctx.Done():
			t.Fatalf("%d of %d results", got, n)
		}
	}
	c.WaitFor("completions in the metrics", 30*time.Second, func() bool {
		m := scrape(t, leaderAddr)
		return value(m, "gridd_tasks_completed_total") == n && value(m, "gridd_tasks_pending") == 0
	})
	if err := c.Nodes[lead].Srv.Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, leaderAddr)
	lintGridd(t, after)
	if v := value(after, "gridd_raft_snapshot_duration_seconds"); v != 1 {
		t.Errorf("%v snapshots observed after one", v)
	}
	for _, name := range []string{"gridd_tasks_submitted_total", "gridd_raft_apply_duration_seconds", "gridd_raft_commit_index"} {
		if value(after, name) <= value(before, name) {
			t.Errorf("%s did not move: %v then %v", name, value(before, name), value(after, name))
		}
	}
	if value(after, "gridd_raft_snapshot_size_bytes") <= 0 {
		t.Errorf("no snapshot size after a snapshot")
	}
	if v := value(after, "gridd_grpc_requests_total", "method", griddpb.Queue_CreateSession_FullMethodName, "code", "OK"); v < 1 {
		t.Errorf("CreateSession calls counted: %v", v)
	}
	if v := value(after, "gridd_grpc_request_duration_seconds", "method", griddpb.Queue_ClientStream_FullMethodName); v < 0 {
		t.Errorf("no ClientStream latency family")
	}

	// Failed calls are counted with their code.
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[lead].Cfg.GRPCAddr))
	if _, err := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: "no-such-session"}); err == nil {
		t.Fatal("GetSession of an unknown session succeeded")
	}
	m = scrape(t, leaderAddr)
	if v := value(m, "gridd_grpc_requests_total", "method", griddpb.Queue_GetSession_FullMethodName, "code", "OK"); v != 0 {
		t.Errorf("failed GetSession counted as OK: %v", v)
	}
	if v := value(m, "gridd_grpc_requests_total", "method", griddpb.Queue_GetSession_FullMethodName); v != 1 {
		t.Errorf("GetSession calls counted: %v, want 1", v)
	}
	t.Logf("apply latency observations on the leader: %v", value(m, "gridd_raft_apply_duration_seconds"))
}

// TestRequestIDForwarded: a request id given to a follower reaches the
// leader's logs and comes back in the response headers; a bad one is
// refused.
func TestRequestIDForwarded(t *testing.T) {
	logs := &lockedBuffer{}
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	c.WaitConverged()
	lead := c.WaitLeader()
	follower := (lead + 1) % 3
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[follower].Cfg.GRPCAddr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var hdr metadata.MD
	rctx := metadata.AppendToOutgoingContext(ctx, server.MDRequestID, "test-req-42")
	if _, err := q.CreateSession(rctx, &griddpb.CreateSessionRequest{Attributes: &griddpb.SessionAttributes{}}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get(server.MDRequestID); len(got) == 0 || got[0] != "test-req-42" {
		t.Errorf("response header %s = %v", server.MDRequestID, got)
	}
	leaderID := c.Nodes[lead].Cfg.ID
	c.WaitFor("the leader's log line", 10*time.Second, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "request_id=test-req-42") && strings.Contains(line, "node="+leaderID) &&
				strings.Contains(line, "forwarded_by=") {
				return true
			}
		}
		return false
	})

	// Without an id, the node makes one and returns it.
	hdr = nil
	if _, err := q.ListSessions(ctx, &griddpb.ListSessionsRequest{}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get(server.MDRequestID); len(got) == 0 || got[0] == "" {
		t.Errorf("no request id made: %v", got)
	}

	bad := metadata.AppendToOutgoingContext(ctx, server.MDRequestID, "has space")
	_, err := q.ListSessions(bad, &griddpb.ListSessionsRequest{})
	wantCode(t, "request id with a space", err, codes.InvalidArgument)
	bad = metadata.AppendToOutgoingContext(ctx, server.MDRequestID, strings.Repeat("x", 129))
	_, err = q.ListSessions(bad, &griddpb.ListSessionsRequest{})
	wantCode(t, "request id too long", err, codes.InvalidArgument)
}

// TestPprofFlag: pprof is served only when asked for.
func TestPprofFlag(t *testing.T) {
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(i int, cfg *server.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
		cfg.Pprof = i == 0
	}})
	for i, want := range []int{http.StatusOK, http.StatusNotFound} {
		resp, err := http.Get("http://" + c.Nodes[i].Srv.MetricsAddr() + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("node %d: /debug/pprof/goroutine: %s, want %d", i, resp.Status, want)
		}
		if want == http.StatusOK && !bytes.Contains(body, []byte("goroutine")) {
			t.Errorf("node %d: pprof answered %.100q", i, body)
		}
	}
}

// lintGridd runs the checks of "promtool check metrics" on gridd's own
// families (the Go collector's are not ours to rename).
func lintGridd(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	var ours []*dto.MetricFamily
	for name, f := range fams {
		if strings.HasPrefix(name, "gridd_") {
			ours = append(ours, f)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetricsSessionsLimit: only the busiest sessions get series, and a
// negative limit turns them off while totals stay.
func TestMetricsSessionsLimit(t *testing.T) {
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(i int, cfg *server.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
		cfg.MetricsSessions = []int{1, -1}[i]
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	idle, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{})
	if err != nil {
		t.Fatal(err)
	}
	busy, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Submit(ctx, []client.Task{{ID: "a"}, {ID: "b"}, {ID: "c"}}); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged()
	m := scrape(t, c.Nodes[0].Srv.MetricsAddr())
	if v := value(m, "gridd_session_tasks_pending", "session", busy.ID()); v != 3 {
		t.Errorf("busy session pending = %v, want 3", v)
	}
	if v := value(m, "gridd_session_tasks_pending", "session", idle.ID()); v != 0 {
		t.Errorf("idle session exported beyond the limit: %v", v)
	}
	if n := len(m["gridd_session_tasks_pending"].GetMetric()); n != 1 {
		t.Errorf("%d session series with a limit of 1", n)
	}
	m = scrape(t, c.Nodes[1].Srv.MetricsAddr())
	if f := m["gridd_session_tasks_pending"]; f != nil {
		t.Errorf("session series exported with the limit off: %v", f)
	}
	if v := value(m, "gridd_tasks_pending"); v != 3 {
		t.Errorf("total pending with the limit off = %v, want 3", v)
	}
}
