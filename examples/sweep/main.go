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
	"fmt"
	"io"
	"time"

	"github.com/gridd/gridd/examples/internal/cli"
)

func main() { cli.Main(run) }

var program = cli.Program{
	Name: "sweep",
	Usage: `usage: sweep worker [flags]   evaluate grid points for gridd until interrupted
       sweep client [flags]   submit a grid, collect the values, print the best points
Run "sweep <command> -h" for the flags.`,
	Worker: cli.Worker{Name: "sweep", Handler: Handle}.Run,
	Client: runClient,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program.Run(ctx, args, stdout, stderr)
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("sweep client", stderr)
	common := cli.CommonFlags(fs, "warn")
	var g Grid
	fs.Float64Var(&g.XMin, "x-min", -2, "smallest x")
	fs.Float64Var(&g.XMax, "x-max", 2, "largest x")
	fs.IntVar(&g.NX, "nx", 41, "points along x")
	fs.Float64Var(&g.YMin, "y-min", -1, "smallest y")
	fs.Float64Var(&g.YMax, "y-max", 3, "largest y")
	fs.IntVar(&g.NY, "ny", 41, "points along y")
	top := fs.Int("top", 10, "rows in the table of best points")
	timeout := cli.TimeoutFlag(fs)
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := common.Logger(stderr)
	if err == nil {
		err = g.Validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := common.Dial(ctx, log)
	if err != nil {
		fmt.Fprintln(stderr, "sweep client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	var progress func(done, total int)
	if !*quiet {
		progress = cli.ProgressLines(stderr, "points")
	}
	start := time.Now()
	pts, err := Sweep(ctx, c, g, progress)
	if err != nil {
		return cli.Exit(stderr, "sweep client:", err)
	}
	best := Best(pts, *top)
	fmt.Fprintf(stdout, "swept %d points (x %g..%g, y %g..%g) in %s\n",
		len(pts), g.XMin, g.XMax, g.YMin, g.YMax, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "best point: f(%.4f, %.4f) = %.6g  (the known minimum is f(1, 1) = 0)\n\n",
		best[0].X, best[0].Y, best[0].F)
	printTable(stdout, best)
	return 0
}
