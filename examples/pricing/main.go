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
	"fmt"
	"io"
	"time"

	"github.com/gridd/gridd/examples/internal/cli"
	"github.com/gridd/gridd/examples/pricing/pricer"
	"github.com/gridd/gridd/sdk/client"
)

func main() { cli.Main(run) }

var program = cli.Program{
	Name: "pricing",
	Usage: `usage: pricing worker [flags]   run option pricing tasks for gridd until interrupted
       pricing client [flags]   submit pricing tasks, collect results, print the prices
Run "pricing <command> -h" for the flags.`,
	Worker: cli.Worker{Name: "pricing", Handler: pricer.Handle, Placement: true}.Run,
	Client: runClient,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program.Run(ctx, args, stdout, stderr)
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("pricing client", stderr)
	common := cli.CommonFlags(fs, "warn")
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
	timeout := cli.TimeoutFlag(fs)
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := common.Logger(stderr)
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
	c, err := common.Dial(ctx, log)
	if err != nil {
		fmt.Fprintln(stderr, "pricing client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	sum, err := pricer.Run(ctx, c, cfg)
	sum.Print(stdout)
	if err != nil {
		return cli.Exit(stderr, "pricing client:", err)
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
