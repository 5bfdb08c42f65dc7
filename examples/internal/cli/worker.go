package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/gridd/gridd/sdk/worker"
)

// Worker is an example's worker subcommand: it runs Handler on the
// cluster's tasks until its context ends.
type Worker struct {
	Name    string // the program: the flag set is "<Name> worker"
	Handler worker.Handler
	// Placement adds --node, --pod and --drain-timeout.
	Placement bool
	// Flags defines the common flags; nil means CommonFlags.
	Flags func(fs *flag.FlagSet, level string) *Common
}

// Run parses args and runs the worker. It returns 2 for bad flags, 1 when
// the worker fails and 0 when it stopped because ctx ended.
func (w Worker) Run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := NewFlagSet(w.Name+" worker", stderr)
	flags := w.Flags
	if flags == nil {
		flags = CommonFlags
	}
	common := flags(fs, "info")
	var opts worker.Options
	fs.StringVar(&opts.WorkerID, "id", "", "worker id (default hostname-pid-random)")
	fs.IntVar(&opts.Concurrency, "concurrency", 0, "tasks run at once (default GOMAXPROCS)")
	fs.StringVar(&opts.NodeCacheAddr, "node-cache", EnvOr("GRIDD_NODE_CACHE", ""),
		"node cache (gridd nodecache) that tasks' shared data is fetched through, e.g. 127.0.0.1:3337; default: the central cache (env GRIDD_NODE_CACHE)")
	if w.Placement {
		fs.StringVar(&opts.Node, "node", "", "node name reported to gridd (default $GRIDD_NODE)")
		fs.StringVar(&opts.Pod, "pod", "", "pod name reported to gridd (default $GRIDD_POD)")
		fs.DurationVar(&opts.DrainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "time running tasks get to finish on shutdown")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := common.Logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, w.Name+":", err)
		return 2
	}
	opts.Addrs, opts.APIKey, opts.Logger = SplitAddrs(common.Addrs), common.APIKey, log
	if opts.TLS, err = common.TLS(); err != nil {
		fmt.Fprintln(stderr, w.Name+":", err)
		return 2
	}
	if err := worker.Run(ctx, opts, w.Handler); err != nil {
		fmt.Fprintln(stderr, w.Name+" worker:", err)
		return 1
	}
	return 0
}
