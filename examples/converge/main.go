// Command converge is the iterative convergence pattern on a gridd
// cluster: a model's parameters are the session's shared data, one update
// level per iteration. The client stores the parameters (level 1), submits
// one task per data shard requiring that level, sums the results, stores
// the next parameters as the next level and repeats until converged. Here
// the model is a linear regression fitted by gradient descent on samples
// drawn from known weights (1, -2, 3, -4, ...), so the answer is checkable.
//
//	converge worker [flags]   compute shard gradients until interrupted
//	                          (--node-cache: fetch the parameters through a node cache)
//	converge client [flags]   run the descent and print the fitted weights
package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/gridd/gridd/examples/internal/cli"
)

func main() { cli.Main(run) }

var program = cli.Program{
	Name: "converge",
	Usage: `usage: converge worker [flags]   compute shard gradients for gridd until interrupted
       converge client [flags]   run the descent, print the fitted weights
Run "converge <command> -h" for the flags.`,
	Worker: cli.Worker{Name: "converge", Handler: Handle}.Run,
	Client: runClient,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program.Run(ctx, args, stdout, stderr)
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("converge client", stderr)
	common := cli.CommonFlags(fs, "warn")
	var cfg Config
	fs.IntVar(&cfg.Dim, "dim", 4, "weights to fit")
	fs.IntVar(&cfg.Shards, "shards", 16, "tasks per iteration")
	fs.IntVar(&cfg.Samples, "samples", 5000, "samples per shard")
	fs.Float64Var(&cfg.Rate, "rate", 0.3, "learning rate")
	fs.Float64Var(&cfg.Tolerance, "tolerance", 1e-3, "stop when the gradient's norm is below this")
	fs.IntVar(&cfg.MaxIterations, "max-iterations", 100, "stop after this many iterations")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the samples")
	timeout := cli.TimeoutFlag(fs)
	quiet := fs.Bool("quiet", false, "no line per iteration")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := common.Logger(stderr)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "converge:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := common.Dial(ctx, log)
	if err != nil {
		fmt.Fprintln(stderr, "converge client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	var progress func(Iteration)
	if !*quiet {
		progress = func(it Iteration) {
			fmt.Fprintf(stderr, "level %3d  loss %.6f  |gradient| %.2e  %s\n", it.Level, it.Loss, it.GradNorm,
				it.Took.Round(1e6))
		}
	}
	out, err := Descend(ctx, c, cfg, progress)
	if err != nil {
		return cli.Exit(stderr, "converge client:", err)
	}
	verdict := "converged"
	if !out.Converged {
		verdict = "did not converge"
	}
	fmt.Fprintf(stdout, "%s after %d iterations (%d shards of %d samples each)\n", verdict, len(out.Iterations),
		cfg.Shards, cfg.Samples)
	fmt.Fprintf(stdout, "fitted weights: %s\n", format(out.Weights))
	fmt.Fprintf(stdout, "true weights:   %s\n", format(TrueWeights(cfg.Dim)))
	if !out.Converged {
		return 1
	}
	return 0
}

func format(w []float64) string {
	parts := make([]string, len(w))
	for i, v := range w {
		parts[i] = fmt.Sprintf("%.3f", v)
	}
	return strings.Join(parts, " ")
}
