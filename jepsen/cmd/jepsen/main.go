// Command jepsen runs gridd's failure-injection suite: it brings up the
// docker-compose cluster from empty volumes (or uses --target), runs queue
// and session workloads through the Go SDK while a seeded nemesis kills,
// pauses, partitions and removes (then re-adds) nodes, kills worker processes, heals, drains, checks the recorded history
// and writes jepsen/results/<timestamp>/. It prints PASS or FAIL and exits
// 1 on FAIL.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridd/gridd/jepsen/checker"
	"github.com/gridd/gridd/jepsen/history"
	"github.com/gridd/gridd/jepsen/nemesis"
)

type config struct {
	seed        uint64
	duration    time.Duration
	short       bool
	target      string
	addrs       string
	composeFile string
	project     string
	composeBin  string
	containers  string
	wipeable    string
	faults      string
	clients     int
	workers     int
	workerProcs int
	sessions    int
	batch       int
	interval    time.Duration
	poison      float64
	drain       time.Duration
	out         string
	keep        bool
	verbose     bool
	plant       string
	sharedData  bool
	sharedReads int
	// sharedExplicit: --shared-data was given, so a cluster without the
	// Cache service is an error rather than a reason to skip the workload.
	sharedExplicit bool
}

func main() {
	var cfg config
	cmd := &cobra.Command{
		Use:   "jepsen",
		Short: "Failure-injection test of a 3-node gridd cluster in docker-compose",
		Long: `jepsen brings up the docker-compose cluster (services n1 n2 n3) from empty
volumes, runs queue clients, SDK workers and session metadata clients against
the host ports while a nemesis injects faults on a seeded schedule (kill -9 of
the leader or a random node, pause of the leader, iptables partitions, kill
of every node, Cluster.Remove of a follower and Cluster.Join back, kill -9
of a worker process running tasks, a follower's raft.db damaged then wiped), then
heals, drains and checks:
  queue:    every acknowledged task has exactly one result or dead letter
            (lost = 0, duplicated = 0, unexpected = 0, poison tasks dead-lettered)
  sessions: create/update/get/close linearizable per session (porcupine)
  shared:   one writer updates a session's shared data level by level while
            readers get the latest or exact levels: no reader sees the latest
            level go backwards, every read returns its level's bytes
  cluster:  one leader, every node at the same applied index at the end
  nemesis:  every node a remove-node took out was joined back; a node whose
            raft.db was damaged refused to start, naming the file
Results go to jepsen/results/<timestamp>/. Exit status 1 on FAIL.

Without --target it refuses to start when the cluster's containers already
exist (it will not take over a cluster it did not start); it removes what it
created at the end, also after a failure or Ctrl-C (unless --keep).`,
		Example: `  jepsen --short
  jepsen --seed 42 --duration 10m
  jepsen --target 127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339 --faults kill-leader,pause-leader`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.short && !cmd.Flags().Changed("duration") {
				cfg.duration = 2 * time.Minute
			}
			if cfg.seed == 0 {
				cfg.seed = rand.Uint64()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.sharedExplicit = cmd.Flags().Changed("shared-data") && cfg.sharedData
			pass, err := run(ctx, cfg)
			if err != nil {
				return err
			}
			if !pass {
				os.Exit(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&cfg.seed, "seed", 0, "seed of the fault schedule and workloads (0: random, printed)")
	f.DurationVar(&cfg.duration, "duration", 5*time.Minute, "how long faults are injected")
	f.BoolVar(&cfg.short, "short", false, "a short run: --duration 2m unless given")
	f.StringVar(&cfg.target, "target", "", "comma-separated gRPC addresses of an existing cluster to test (not started or removed by the harness)")
	f.StringVar(&cfg.addrs, "addrs", "127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339", "host gRPC addresses of the nodes the compose file publishes")
	f.StringVar(&cfg.composeFile, "compose-file", "docker-compose.yml", "the compose file of the cluster")
	f.StringVar(&cfg.project, "project", "gridd-jepsen", "compose project name for the cluster the harness starts")
	f.StringVar(&cfg.composeBin, "compose", "", `compose command: "docker-compose" or "docker" (compose plugin); default: whichever exists`)
	f.StringVar(&cfg.containers, "containers", "n1=gridd-n1,n2=gridd-n2,n3=gridd-n3", "node id=container name, for the nemesis")
	f.StringVar(&cfg.wipeable, "wipeable", "n2,n3", "nodes corrupt-follower may damage and wipe: those that join by themselves when empty (never the one that bootstraps)")
	f.StringVar(&cfg.faults, "faults", "all", "comma-separated faults ("+kindsList()+"), all, or none")
	f.IntVar(&cfg.clients, "clients", 6, "queue clients (one session each)")
	f.IntVar(&cfg.workers, "workers", 3, "in-process SDK workers (4 task slots each)")
	f.IntVar(&cfg.workerProcs, "worker-procs", 2, "SDK workers in processes of their own (4 task slots each), which kill-worker kills")
	f.IntVar(&cfg.sessions, "session-clients", 4, "session metadata clients")
	f.IntVar(&cfg.batch, "batch", 10, "tasks per submit")
	f.DurationVar(&cfg.interval, "interval", 100*time.Millisecond, "time between one client's submits")
	f.Float64Var(&cfg.poison, "poison", 0.03, "fraction of poison tasks (always fail; must dead-letter)")
	f.DurationVar(&cfg.drain, "drain", 2*time.Minute, "at most this long to wait for outstanding results after healing")
	f.StringVar(&cfg.out, "out", "jepsen/results", "directory for the results")
	f.BoolVar(&cfg.keep, "keep", false, "leave the cluster running at the end")
	f.StringVar(&cfg.plant, "plant", "", "self-test: plant a bug ("+strings.Join(plantKinds, ", ")+") in the recorded history before checking; the run must FAIL")
	f.BoolVar(&cfg.verbose, "verbose", false, "log the SDK's debug messages")
	f.BoolVar(&cfg.sharedData, "shared-data", true, "run the shared-data workload (skipped when the cluster has no Cache service, unless given explicitly)")
	f.IntVar(&cfg.sharedReads, "shared-readers", 3, "readers of the shared-data workload")
	cmd.AddCommand(workerCommand())
	if err := cmd.Execute(); err != nil {
		os.Exit(2)
	}
}

func kindsList() string {
	var s []string
	for _, k := range nemesis.AllKinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

// summary is summary.json.
type summary struct {
	Seed        uint64                 `json:"seed"`
	Start       time.Time              `json:"start"`
	Duration    string                 `json:"duration"`
	Target      []string               `json:"target"`
	Operations  int                    `json:"operations"`
	Faults      []faultRecord          `json:"faults"`
	FaultCounts map[string]int         `json:"fault_counts"`
	Queue       checker.QueueResult    `json:"queue"`
	Sessions    checker.SessionsResult `json:"sessions"`
	// SharedData is nil when the workload did not run.
	SharedData *checker.SharedDataResult `json:"shared_data,omitempty"`
	Cluster    clusterResult             `json:"cluster"`
	// Throughput is the outcomes delivered per second under each kind of
	// fault, and under none.
	Throughput map[string]rate `json:"throughput"`
	// NotRejoined lists the nodes remove-node took out that could not be
	// joined back, even by the final heal: the run fails.
	NotRejoined []string `json:"not_rejoined,omitempty"`
	// Problems are what faults showed to be wrong (a node that started
	// from a damaged raft.db): the run fails.
	Problems []string `json:"problems,omitempty"`
	Planted  string   `json:"planted,omitempty"`
	Valid    bool     `json:"valid"`
}

type faultRecord struct {
	Kind   string   `json:"kind"`
	Nodes  []string `json:"nodes,omitempty"`
	Start  float64  `json:"start_s"`
	End    float64  `json:"end_s,omitempty"`
	Error  string   `json:"error,omitempty"`
	Healed bool     `json:"healed"`
}

func run(ctx context.Context, cfg config) (pass bool, err error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sdkLevel := slog.LevelError
	if cfg.verbose {
		sdkLevel = slog.LevelDebug
	}
	sdkLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: sdkLevel}))
	fmt.Printf("jepsen: seed %d (replay with --seed %d)\n", cfg.seed, cfg.seed)

	kinds, err := nemesis.ParseKinds(cfg.faults)
	if cfg.faults == "none" {
		kinds, err = nil, nil
	}
	if err != nil {
		return false, err
	}
	if slices.Contains(kinds, nemesis.KillWorker) && cfg.workerProcs <= 0 {
		return false, fmt.Errorf("--faults: kill-worker needs worker processes: --worker-procs is %d", cfg.workerProcs)
	}
	if cfg.workers < 0 || cfg.workerProcs < 0 || cfg.workers+cfg.workerProcs == 0 {
		return false, fmt.Errorf("--workers %d, --worker-procs %d: need at least one worker and no negative count",
			cfg.workers, cfg.workerProcs)
	}
	if cfg.plant != "" && !slices.Contains(plantKinds, cfg.plant) {
		return false, fmt.Errorf("--plant %q: known: %v", cfg.plant, plantKinds)
	}
	containers, order, err := parseContainers(cfg.containers)
	if err != nil {
		return false, err
	}
	var wipeable []string
	for _, id := range strings.Split(cfg.wipeable, ",") {
		if id = strings.TrimSpace(id); id == "" {
			continue
		}
		if _, ok := containers[id]; !ok {
			return false, fmt.Errorf("--wipeable: %q is not one of the nodes %v (--containers)", id, order)
		}
		wipeable = append(wipeable, id)
	}
	if slices.Contains(kinds, nemesis.CorruptFollower) && len(wipeable) == 0 {
		return false, errors.New("--faults: corrupt-follower needs a node it may wipe: --wipeable is empty")
	}

	// The cluster: ours (started here, removed at the end) or the user's.
	addrs := strings.Split(cfg.addrs, ",")
	if cfg.target != "" {
		addrs = strings.Split(cfg.target, ",")
		if len(kinds) > 0 {
			names := containerNames(containers, order)
			found, err := existing(ctx, nemesis.Exec, names)
			if err != nil {
				return false, err
			}
			if len(found) != len(names) {
				return false, fmt.Errorf("--target: the nemesis needs the nodes' containers %v, found only %v: "+
					"name them with --containers or run without faults (--faults none)", names, found)
			}
		}
	} else {
		found, err := existing(ctx, nemesis.Exec, containerNames(containers, order))
		if err != nil {
			return false, err
		}
		if len(found) > 0 {
			return false, fmt.Errorf("containers %v already exist: this cluster was not started by the harness; "+
				"remove it (make cluster-down) or test it on purpose with --target ADDRS", found)
		}
		cp := &compose{run: nemesis.Exec, bin: composeBin(cfg.composeBin), file: cfg.composeFile,
			project: cfg.project, services: order}
		// Cleanup runs on every way out, Ctrl-C included (ctx is cancelled
		// then, so it gets its own context).
		defer func() {
			if cfg.keep {
				fmt.Printf("jepsen: --keep: cluster left running (%s -p %s down -v to remove)\n", cp.bin, cp.project)
				return
			}
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if derr := cp.down(cctx); derr != nil {
				log.Error("cleanup", "err", derr)
				err = errors.Join(err, derr)
			}
		}()
		log.Info("starting the cluster", "compose", cp.bin, "file", cp.file, "project", cp.project)
		if err := cp.up(ctx); err != nil {
			return false, err
		}
	}
	if err := waitHealthy(ctx, addrs, 90*time.Second); err != nil {
		return false, err
	}

	start := time.Now()
	dir := filepath.Join(cfg.out, start.UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("results dir: %w", err)
	}
	hf, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return false, fmt.Errorf("history: %w", err)
	}
	defer hf.Close()
	rec := history.NewRecorder(hf)
	rng := rand.New(rand.NewPCG(cfg.seed, 1))

	// Workers and clients.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	workers := runWorkers(wctx, addrs, cfg.workers, sdkLog)
	defer func() { stopWorkers(); workers.Wait() }()
	procs, err := newProcWorkers(cfg.workerProcs, addrs, log)
	if err != nil {
		return false, err
	}
	defer procs.Stop(10 * time.Second)
	if err := procs.StartAll(); err != nil {
		return false, err
	}

	var qcs []*queueClient
	defer func() {
		for _, q := range qcs {
			q.finish()
		}
	}()
	for i := range cfg.clients {
		q, err := newQueueClient(ctx, i, addrs, rec, sdkLog)
		if err != nil {
			return false, err
		}
		qcs = append(qcs, q)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var load sync.WaitGroup
	for _, q := range qcs {
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		load.Go(func() { q.submitLoop(loadCtx, cfg.batch, cfg.interval, cfg.poison, r) })
	}
	runID := fmt.Sprintf("js%d", start.Unix())
	for i := range cfg.sessions {
		conns, err := dialAll(addrs)
		if err != nil {
			return false, err
		}
		w := &sessionsWorker{process: 1000 + i, rec: rec, conns: conns, prefix: runID, start: start,
			rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))}
		load.Go(func() {
			defer func() {
				for _, c := range conns {
					_ = c.Close()
				}
			}()
			w.loop(loadCtx)
		})
	}

	if cfg.sharedData {
		sw, err := newSharedWorkload(ctx, addrs, cfg.sharedReads, rec, sdkLog, log)
		switch {
		case errors.Is(err, errNoCache) && !cfg.sharedExplicit:
			log.Warn("shared-data workload skipped", "err", err)
		case err != nil:
			return false, err
		default:
			defer sw.close()
			sw.start(loadCtx, &load, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
		}
	}

	// The nemesis, for --duration.
	var faults []faultRecord
	var fmu sync.Mutex
	d := &nemesis.Docker{Run: nemesis.Exec, Containers: containers, Order: order, Log: log,
		Leader:     func(ctx context.Context) (string, error) { return leaderOf(ctx, addrs) },
		Membership: membership{addrs: addrs}, Workers: procs, Wipeable: wipeable}
	nctx, stopNemesis := context.WithTimeout(ctx, cfg.duration)
	defer stopNemesis()
	if len(kinds) > 0 {
		sched := nemesis.NewSchedule(cfg.seed, kinds)
		d.Loop(nctx, sched, func(e nemesis.Event) {
			fmu.Lock()
			defer fmu.Unlock()
			at := e.At.Sub(start).Seconds()
			v := history.Value{Fault: string(e.Kind), Nodes: e.Nodes}
			if e.Err != nil {
				v.Error = e.Err.Error()
			}
			if !e.Healed {
				rec.Add(-1, history.Invoke, history.Nemesis, v)
				faults = append(faults, faultRecord{Kind: string(e.Kind), Nodes: e.Nodes, Start: at, Error: v.Error})
				if len(e.Nodes) == 0 { // not injected
					rec.Add(-1, history.Fail, history.Nemesis, v)
				}
				return
			}
			rec.Add(-1, history.OK, history.Nemesis, v)
			if n := len(faults); n > 0 {
				faults[n-1].End, faults[n-1].Healed = at, e.Err == nil
			}
		})
	} else {
		<-nctx.Done()
	}
	// Heal whatever may be left, then stop the load and drain.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	var notRejoined []string
	if len(kinds) > 0 {
		if err := d.HealAll(hctx); err != nil {
			log.Warn("heal all", "err", err)
		}
		for _, m := range d.Removed() {
			notRejoined = append(notRejoined, m.ID)
		}
		if len(notRejoined) > 0 {
			log.Error("nemesis: removed nodes could not be joined back: the run fails", "nodes", notRejoined)
		}
	}
	cancel()
	if ctx.Err() != nil {
		return false, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	log.Info("faults over: healed; stopping the load")
	stopLoad()
	load.Wait()
	drain(ctx, rec, cfg.drain, log)
	cluster := checkCluster(context.WithoutCancel(ctx), addrs, 60*time.Second)
	for _, q := range qcs {
		q.finish()
	}
	qcs = nil
	stopWorkers()
	workers.Wait()
	procs.Stop(10 * time.Second)

	if err := rec.Flush(); err != nil {
		return false, err
	}
	ops := rec.Ops()
	if cfg.plant != "" {
		if ops, err = plant(ops, cfg.plant); err != nil {
			return false, err
		}
		log.Warn("self-test: bug planted in the history before checking", "plant", cfg.plant)
	}
	sum := summary{Seed: cfg.seed, Start: start, Duration: time.Since(start).Round(time.Second).String(),
		Target: addrs, Operations: len(ops), Faults: faults, FaultCounts: map[string]int{}, Planted: cfg.plant,
		NotRejoined: notRejoined, Problems: d.Problems()}
	// Every scheduled kind is listed, so a kind never injected shows as 0.
	for _, k := range kinds {
		sum.FaultCounts[string(k)] = 0
	}
	for _, f := range faults {
		if len(f.Nodes) > 0 {
			sum.FaultCounts[f.Kind]++
		}
	}
	sum.Queue = checker.Queue(ops)
	sum.Sessions = checker.Sessions(ops, 2*time.Minute)
	sum.Cluster = cluster
	if slices.ContainsFunc(ops, func(op history.Op) bool { return op.F == history.SharedWrite }) {
		sd := checker.SharedData(ops)
		sum.SharedData = &sd
	}
	sum.Valid = sum.Queue.Valid && sum.Sessions.Valid && sum.Cluster.Valid && len(sum.NotRejoined) == 0 &&
		len(sum.Problems) == 0 && (sum.SharedData == nil || sum.SharedData.Valid)
	if err := sum.Sessions.Visualize(filepath.Join(dir, "sessions.html")); err != nil {
		log.Warn("porcupine visualization", "err", err)
	}
	bs := timeline(ops, faults)
	sum.Throughput = faultRates(bs, faults)
	if err := writeTimeline(dir, bs); err != nil {
		log.Warn("timeline", "err", err)
	}
	b, _ := json.MarshalIndent(sum, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return false, fmt.Errorf("summary: %w", err)
	}
	printSummary(sum, dir)
	return sum.Valid, nil
}

func parseContainers(s string) (map[string]string, []string, error) {
	m := map[string]string{}
	var order []string
	for _, kv := range strings.Split(s, ",") {
		id, c, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || id == "" || c == "" {
			return nil, nil, fmt.Errorf("--containers: %q is not id=container", kv)
		}
		m[id] = c
		order = append(order, id)
	}
	return m, order, nil
}

func containerNames(m map[string]string, order []string) []string {
	var out []string
	for _, id := range order {
		out = append(out, m[id])
	}
	return out
}

func composeBin(flag string) string {
	if flag != "" {
		return flag
	}
	if _, err := nemesis.Exec(context.Background(), "docker-compose", "version"); err == nil {
		return "docker-compose"
	}
	return "docker"
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func printSummary(s summary, dir string) {
	q, se, c := s.Queue, s.Sessions, s.Cluster
	fmt.Println()
	fmt.Printf("seed %d, %s, %d operations recorded, results in %s\n", s.Seed, s.Duration, s.Operations, dir)
	fmt.Printf("faults injected: %v\n", s.FaultCounts)
	if len(s.Throughput) > 0 {
		kinds := slices.Sorted(maps.Keys(s.Throughput))
		fmt.Printf("outcomes/s under each fault (seconds with none):")
		for _, k := range kinds {
			r := s.Throughput[k]
			fmt.Printf(" %s %.0f (%d of %d)", k, r.PerSecond, r.Stalled, r.Seconds)
		}
		fmt.Println()
	}
	if s.Planted != "" {
		fmt.Printf("SELF-TEST: bug %q planted in the history\n", s.Planted)
	}
	fmt.Printf("queue     %s  attempted %d, acknowledged %d, unknown %d, results %d, dead letters %d\n",
		verdict(q.Valid), q.Attempted, q.Acknowledged, q.Unknown, q.Results, q.DeadLetters)
	fmt.Printf("                lost %d, duplicated %d, unexpected %d, wrong outcome %d, recovered %d, wire repeats %d\n",
		q.Lost, q.Duplicated, q.Unexpected, q.WrongOutcome, q.Recovered, q.WireRepeats)
	for _, l := range [][]string{q.LostExamples, q.DuplicatedExamples, q.UnexpectedExamples, q.WrongExamples} {
		if len(l) > 0 {
			fmt.Printf("                e.g. %v\n", l)
		}
	}
	fmt.Printf("sessions  %s  porcupine %s: %d operations (%d unknown) on %d sessions\n",
		verdict(se.Valid), se.Result, se.Operations, se.Unknown, se.Sessions)
	if sd := s.SharedData; sd != nil {
		fmt.Printf("shared    %s  writes %d (acknowledged %d, up to level %d), reads %d (ok %d)\n",
			verdict(sd.Valid), sd.Writes, sd.WritesAcked, sd.MaxLevel, sd.Reads, sd.ReadsOK)
		fmt.Printf("                backwards %d, wrong bytes %d, stale (reported only) %d\n",
			sd.Backwards, sd.WrongBytes, sd.Stale)
		if len(sd.Examples) > 0 {
			fmt.Printf("                e.g. %v\n", sd.Examples)
		}
	}
	fmt.Printf("cluster   %s  %s\n", verdict(c.Valid), c.Detail)
	if len(s.NotRejoined) > 0 {
		fmt.Printf("nemesis   FAIL  removed and never joined back: %v\n", s.NotRejoined)
	}
	for _, p := range s.Problems {
		fmt.Printf("nemesis   FAIL  %s\n", p)
	}
	fmt.Printf("\n%s\n", verdict(s.Valid))
}

// writeTimeline writes timeline.csv and throughput.png into dir.
func writeTimeline(dir string, bs []bucket) error {
	var errs []error
	for name, write := range map[string]func(io.Writer, []bucket) error{
		"timeline.csv": writeCSV, "throughput.png": writePNG} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, write(f, bs), f.Close())
	}
	return errors.Join(errs...)
}
