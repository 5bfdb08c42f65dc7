// Command montecarlo is a sample gridd workload: it estimates pi by Monte
// Carlo, one task per batch of random points.
//
//	montecarlo worker [flags]   run tasks until interrupted
//	montecarlo client [flags]   submit the tasks, collect the results, print a summary
//
// The client exits with status 1 if any task's result is missing or
// duplicated.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gridd/gridd/examples/montecarlo/mc"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

const defaultAddrs = "127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: montecarlo worker [flags]   run pi tasks for gridd until interrupted
       montecarlo client [flags]   submit pi tasks, collect results, print a summary
Run "montecarlo <command> -h" for the flags.`)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "worker":
		return runWorker(ctx, args[1:], stderr)
	case "client":
		return runClient(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "montecarlo: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func runWorker(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("montecarlo worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addrs", defaultAddrs, "gRPC addresses of gridd nodes, comma-separated")
	id := fs.String("id", "", "worker id (default hostname-pid-random)")
	conc := fs.Int("concurrency", 0, "tasks run at once (default GOMAXPROCS)")
	node := fs.String("node", "", "node name reported to gridd (default $GRIDD_NODE)")
	pod := fs.String("pod", "", "pod name reported to gridd (default $GRIDD_POD)")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (default $GRIDD_API_KEY)")
	drain := fs.Duration("drain-timeout", worker.DefaultDrainTimeout, "time running tasks get to finish on shutdown")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "montecarlo:", err)
		return 2
	}
	err = worker.Run(ctx, worker.Options{
		Addrs: splitAddrs(*addrs), WorkerID: *id, Node: *node, Pod: *pod, Concurrency: *conc,
		APIKey: *apiKey, Logger: log, DrainTimeout: *drain,
	}, mc.Handle)
	if err != nil {
		fmt.Fprintln(stderr, "montecarlo worker:", err)
		return 1
	}
	return 0
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("montecarlo client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addrs", defaultAddrs, "gRPC addresses of gridd nodes, comma-separated")
	var cfg mc.Config
	fs.IntVar(&cfg.Tasks, "tasks", 20_000, "number of tasks")
	fs.IntVar(&cfg.BatchSize, "batch", 100, "tasks per submitted batch")
	fs.IntVar(&cfg.Submitters, "submitters", 4, "goroutines submitting at once")
	fs.IntVar(&cfg.Samples, "samples", 200_000, "random points per task")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "base seed of the tasks")
	maxAttempts := fs.Int("max-attempts", 0, "attempts per task before it is dead-lettered (0: server default)")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (default $GRIDD_API_KEY)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	quiet := fs.Bool("quiet", false, "no progress bar")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "montecarlo:", err)
		return 2
	}
	cfg.MaxAttempts = int32(*maxAttempts)
	cfg.Logger = log
	if !*quiet {
		cfg.Progress = mc.NewProgress(stderr)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := client.Dial(ctx, splitAddrs(*addrs), client.WithAPIKey(*apiKey), client.WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, "montecarlo client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	sum, err := mc.Run(ctx, c, cfg)
	sum.Print(stdout)
	if err != nil {
		fmt.Fprintln(stderr, "montecarlo client:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	if !sum.OK() {
		fmt.Fprintln(stderr, "montecarlo client: FAILED: some tasks are missing, duplicated or invalid")
		return 1
	}
	return 0
}
