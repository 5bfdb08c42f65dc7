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
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/gridd/gridd/examples/internal/cli"
	"github.com/gridd/gridd/examples/montecarlo/mc"
)

func main() { cli.Main(run) }

var program = cli.Program{
	Name: "montecarlo",
	Usage: `usage: montecarlo worker [flags]   run pi tasks for gridd until interrupted
       montecarlo client [flags]   submit pi tasks, collect results, print a summary
Run "montecarlo <command> -h" for the flags.`,
	Worker: cli.Worker{Name: "montecarlo", Handler: mc.Handle, Placement: true, Flags: commonFlags}.Run,
	Client: runClient,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program.Run(ctx, args, stdout, stderr)
}

// commonFlags defines the flags every command takes, spelled as montecarlo
// always has: -addrs, which does not read $GRIDD_ADDR, unlike the other
// examples' --addr.
func commonFlags(fs *flag.FlagSet, level string) *cli.Common {
	c := &cli.Common{LevelFlag: "-log-level"}
	fs.StringVar(&c.Addrs, "addrs", cli.DefaultAddrs, "gRPC addresses of gridd nodes, comma-separated")
	fs.StringVar(&c.APIKey, "api-key", os.Getenv("GRIDD_API_KEY"), "API key (default $GRIDD_API_KEY)")
	fs.StringVar(&c.Level, "log-level", level, "debug, info, warn or error")
	return c
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("montecarlo client", stderr)
	common := commonFlags(fs, "warn")
	var cfg mc.Config
	fs.IntVar(&cfg.Tasks, "tasks", 20_000, "number of tasks")
	fs.IntVar(&cfg.BatchSize, "batch", 100, "tasks per submitted batch")
	fs.IntVar(&cfg.Submitters, "submitters", 4, "goroutines submitting at once")
	fs.IntVar(&cfg.Samples, "samples", 200_000, "random points per task")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "base seed of the tasks")
	maxAttempts := fs.Int("max-attempts", 0, "attempts per task before it is dead-lettered (0: server default)")
	timeout := cli.TimeoutFlag(fs)
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := common.Logger(stderr)
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
	c, err := common.Dial(ctx, log)
	if err != nil {
		fmt.Fprintln(stderr, "montecarlo client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	sum, err := mc.Run(ctx, c, cfg)
	sum.Print(stdout)
	if err != nil {
		return cli.Exit(stderr, "montecarlo client:", err)
	}
	if !sum.OK() {
		fmt.Fprintln(stderr, "montecarlo client: FAILED: some tasks are missing, duplicated or invalid")
		return 1
	}
	return 0
}
