// Command pricing prices a European call and put by Monte Carlo on a gridd
// cluster: the client splits the paths into tasks, workers simulate them
// and return sums, and the client aggregates a price, a standard error and
// a 95% confidence interval, next to the closed-form Black-Scholes price.
//
//	pricing worker [flags]   run pricing tasks until interrupted
//	pricing client [flags]   submit the tasks, collect the results, print the prices
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

	"github.com/gridd/gridd/examples/pricing/pricer"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// defaultAddrs are the nodes `make run` starts.
const defaultAddrs = "127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: pricing worker [flags]   run option pricing tasks for gridd until interrupted
       pricing client [flags]   submit pricing tasks, collect results, print the prices
Run "pricing <command> -h" for the flags.`)
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
		fmt.Fprintf(stderr, "pricing: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

// envOr returns the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: want debug, info, warn or error", level)
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
	fs := flag.NewFlagSet("pricing worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", envOr("GRIDD_ADDR", defaultAddrs), "gRPC addresses of gridd nodes, comma-separated (env GRIDD_ADDR)")
	id := fs.String("id", "", "worker id (default hostname-pid-random)")
	conc := fs.Int("concurrency", 0, "tasks run at once (default GOMAXPROCS)")
	node := fs.String("node", "", "node name reported to gridd (default $GRIDD_NODE)")
	pod := fs.String("pod", "", "pod name reported to gridd (default $GRIDD_POD)")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (env GRIDD_API_KEY)")
	drain := fs.Duration("drain-timeout", worker.DefaultDrainTimeout, "time running tasks get to finish on shutdown")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "pricing:", err)
		return 2
	}
	err = worker.Run(ctx, worker.Options{
		Addrs: splitAddrs(*addrs), WorkerID: *id, Node: *node, Pod: *pod, Concurrency: *conc,
		APIKey: *apiKey, Logger: log, DrainTimeout: *drain,
	}, pricer.Handle)
	if err != nil {
		fmt.Fprintln(stderr, "pricing worker:", err)
		return 1
	}
	return 0
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pricing client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", envOr("GRIDD_ADDR", defaultAddrs), "gRPC addresses of gridd nodes, comma-separated (env GRIDD_ADDR)")
	cfg := pricer.Config{Market: pricer.DefaultMarket}
	fs.IntVar(&cfg.Paths, "paths", 10_000_000, "paths in all, split across the tasks")
	fs.IntVar(&cfg.Tasks, "tasks", 2_000, "number of tasks")
	fs.Float64Var(&cfg.S0, "s0", cfg.S0, "spot price")
	fs.Float64Var(&cfg.K, "k", cfg.K, "strike")
	fs.Float64Var(&cfg.R, "r", cfg.R, "risk-free rate, continuously compounded")
	fs.Float64Var(&cfg.Sigma, "sigma", cfg.Sigma, "volatility")
	fs.Float64Var(&cfg.T, "t", cfg.T, "maturity in years")
	fs.IntVar(&cfg.BatchSize, "batch", 500, "tasks per submitted batch")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "base seed of the tasks (the same seed gives the same prices)")
	maxAttempts := fs.Int("max-attempts", 0, "attempts per task before it is dead-lettered (0: server default)")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (env GRIDD_API_KEY)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	quiet := fs.Bool("quiet", false, "no progress lines")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "pricing:", err)
		return 2
	}
	cfg.MaxAttempts = int32(*maxAttempts)
	cfg.Logger = log
	// Fail on bad parameters before connecting.
	if _, err := cfg.Specs(); err != nil {
		fmt.Fprintln(stderr, "pricing client:", err)
		return 2
	}
	if !*quiet {
		cfg.OnResult = progressLines(stderr)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := client.Dial(ctx, splitAddrs(*addrs), client.WithAPIKey(*apiKey), client.WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, "pricing client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	sum, err := pricer.Run(ctx, c, cfg)
	sum.Print(stdout)
	if err != nil {
		fmt.Fprintln(stderr, "pricing client:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	if !sum.OK() {
		fmt.Fprintln(stderr, "pricing client: FAILED: some tasks are missing, duplicated or invalid")
		return 1
	}
	return 0
}

// progressLines prints one line per 10% of the results: plain lines read
// well in a terminal and in a log file alike.
func progressLines(w io.Writer) func(done, total int, s *client.Session) {
	start, next := time.Now(), 1
	return func(done, total int, s *client.Session) {
		for next <= 10 && done*10 >= next*total {
			fmt.Fprintf(w, "%3d%%  %d/%d results  %.1fs  reconnects %d\n",
				next*10, done, total, time.Since(start).Seconds(), s.Stats().Reconnects)
			next++
		}
	}
}
