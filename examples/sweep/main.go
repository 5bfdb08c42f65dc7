// Command sweep is a parameter sweep on a gridd cluster: the client
// submits one task per point of a grid over two parameters, workers
// evaluate the function there (the Rosenbrock function, whose minimum is
// known: 0 at (1, 1)), and the client prints the best points.
//
//	sweep worker [flags]   evaluate grid points until interrupted
//	sweep client [flags]   submit the grid, collect the values, print the best points
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
	fmt.Fprintln(w, `usage: sweep worker [flags]   evaluate grid points for gridd until interrupted
       sweep client [flags]   submit a grid, collect the values, print the best points
Run "sweep <command> -h" for the flags.`)
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
		fmt.Fprintf(stderr, "sweep: unknown command %q\n", args[0])
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
	fs := flag.NewFlagSet("sweep worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", envOr("GRIDD_ADDR", defaultAddrs), "gRPC addresses of gridd nodes, comma-separated (env GRIDD_ADDR)")
	id := fs.String("id", "", "worker id (default hostname-pid-random)")
	conc := fs.Int("concurrency", 0, "tasks run at once (default GOMAXPROCS)")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (env GRIDD_API_KEY)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 2
	}
	err = worker.Run(ctx, worker.Options{
		Addrs: splitAddrs(*addrs), WorkerID: *id, Concurrency: *conc, APIKey: *apiKey, Logger: log,
	}, Handle)
	if err != nil {
		fmt.Fprintln(stderr, "sweep worker:", err)
		return 1
	}
	return 0
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sweep client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", envOr("GRIDD_ADDR", defaultAddrs), "gRPC addresses of gridd nodes, comma-separated (env GRIDD_ADDR)")
	var g Grid
	fs.Float64Var(&g.XMin, "x-min", -2, "smallest x")
	fs.Float64Var(&g.XMax, "x-max", 2, "largest x")
	fs.IntVar(&g.NX, "nx", 41, "points along x")
	fs.Float64Var(&g.YMin, "y-min", -1, "smallest y")
	fs.Float64Var(&g.YMax, "y-max", 3, "largest y")
	fs.IntVar(&g.NY, "ny", 41, "points along y")
	top := fs.Int("top", 10, "rows in the table of best points")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (env GRIDD_API_KEY)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	quiet := fs.Bool("quiet", false, "no progress lines")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err == nil {
		err = g.Validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := client.Dial(ctx, splitAddrs(*addrs), client.WithAPIKey(*apiKey), client.WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, "sweep client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	var progress func(done, total int)
	if !*quiet {
		progress = progressLines(stderr)
	}
	start := time.Now()
	pts, err := Sweep(ctx, c, g, progress)
	if err != nil {
		fmt.Fprintln(stderr, "sweep client:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	best := Best(pts, *top)
	fmt.Fprintf(stdout, "swept %d points (x %g..%g, y %g..%g) in %s\n",
		len(pts), g.XMin, g.XMax, g.YMin, g.YMax, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "best point: f(%.4f, %.4f) = %.6g  (the known minimum is f(1, 1) = 0)\n\n",
		best[0].X, best[0].Y, best[0].F)
	printTable(stdout, best)
	return 0
}

// progressLines prints one line per 10% of the results.
func progressLines(w io.Writer) func(done, total int) {
	next := 1
	return func(done, total int) {
		for next <= 10 && done*10 >= next*total {
			fmt.Fprintf(w, "%3d%%  %d/%d points\n", next*10, done, total)
			next++
		}
	}
}
