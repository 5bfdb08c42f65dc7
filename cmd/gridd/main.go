// Command gridd runs one node of a gridd cluster: the Raft-replicated queue
// that clients submit task sessions to and workers pull tasks from.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	// Signals stay caught until gridd exits: a repeated signal (some
	// supervisors send one to the process and one to its group) must not
	// cut the graceful stop short. The stop is bounded; kill -9 remains.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs gridd with args and returns the exit code. A failure is one
// line on stderr: the part a person reads when a node will not start.
func execute(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	cmd := newRootCmd(lookupEnv, stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "gridd: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

const longHelp = `gridd is a fault-tolerant grid scheduler. Clients submit sessions of short
tasks, workers run them, and 1, 3 or 5 gridd nodes replicate every queued task
and every unacknowledged result through Raft: the crash of a node, the leader
included, loses no task and duplicates no result.

With no flags, gridd runs a single node that bootstraps its own cluster, keeps
its data in ./gridd-data, and listens on loopback only: the queue API on
127.0.0.1:1337, Raft on 127.0.0.1:7337 and metrics on 127.0.0.1:8080. The node
id defaults to the hostname; it must not change across restarts.

Every flag can also be set with an environment variable GRIDD_<FLAG>
(upper-case, '-' becomes '_', e.g. GRIDD_DATA_DIR) or as a key of the YAML
file given by --config (e.g. "data-dir: d1"). A flag wins over the
environment, which wins over the file, which wins over the default.

A node with an empty data dir and no --join bootstraps a new cluster; with
--join it asks a member to add it. A node with data rejoins with what it has.
Stop a node with Ctrl-C or SIGTERM: it finishes what it is doing and closes.`

const exampleHelp = `  # A 3-node cluster on one machine, one terminal per node:
  gridd --id n1 --data-dir d1 --grpc-addr 127.0.0.1:21337 --raft-addr 127.0.0.1:27337 --metrics-addr 127.0.0.1:28080
  gridd --id n2 --data-dir d2 --grpc-addr 127.0.0.1:21338 --raft-addr 127.0.0.1:27338 --metrics-addr 127.0.0.1:28081 --join 127.0.0.1:21337
  gridd --id n3 --data-dir d3 --grpc-addr 127.0.0.1:21339 --raft-addr 127.0.0.1:27339 --metrics-addr 127.0.0.1:28082 --join 127.0.0.1:21337

  # Then look at it (gridctl tries each address until one answers):
  gridctl --addr 127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339 cluster status

  # The same settings from the environment or a file:
  GRIDD_ID=n1 GRIDD_DATA_DIR=d1 gridd
  gridd --config n1.yaml     # n1.yaml holds lines such as "data-dir: d1"`

func newRootCmd(lookupEnv func(string) (string, bool), stderr io.Writer) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:           "gridd",
		Short:         "Run a node of a fault-tolerant, Raft-replicated grid scheduler",
		Long:          longHelp,
		Example:       exampleHelp,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			origins, err := resolve(cmd.Flags(), lookupEnv)
			if err != nil {
				return err
			}
			if err := validate(&o, origins); err != nil {
				return err
			}
			logger := newLogger(stderr, o.LogLevel, o.LogFormat)
			cfg := serverConfig(&o, logger)
			if cfg.TLS, err = loadTLS(&o); err != nil {
				return err
			}
			keys, err := configureAuth(&o, &cfg, logger)
			if err != nil {
				return err
			}
			if keys != nil {
				ctx, cancel := context.WithCancel(cmd.Context())
				defer cancel()
				go reloadKeysOnHUP(ctx, o.APIKeysFile, keys, logger)
			}
			return runNode(cmd.Context(), cfg, logger)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (see gridd --help)", err)
	})
	registerFlags(cmd.Flags(), &o, defaultID())
	cmd.Flags().SortFlags = false
	cmd.AddCommand(newWorkerCmd(lookupEnv, stderr))
	cmd.AddCommand(newNodecacheCmd(lookupEnv, stderr))
	cmd.AddCommand(newRestoreCmd(stderr))
	return cmd
}

// defaultID is the hostname: stable across restarts, and different on each
// machine of a cluster. On one machine several nodes need --id.
func defaultID() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// newLogger is the root logger, without a component: the server's parts
// each add their own, and a second "component" key would be ambiguous.
// level and format were validated.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevels[strings.ToLower(level)]}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if strings.EqualFold(format, "json") {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h)
}
