// Command gridctl operates a gridd cluster: its members and leadership, and
// the sessions it runs. It talks to any node over the public gRPC API.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	// Ctrl-C and SIGTERM cancel the command's context, so that long-running
	// commands (submit, session watch, bench) stop cleanly: acknowledgements
	// flushed, bench's session closed. A second signal kills as usual.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs gridctl with args and returns the exit code: 0, or 1 with
// one line on stderr saying what went wrong and what to try.
func execute(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	cmd := newRootCmd(lookupEnv)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "gridctl: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// globals are the flags every command shares.
type globals struct {
	addrs   []string
	apiKey  string
	output  string
	timeout time.Duration

	// Transport security (TLS): see certs.go.
	tlsCA, tlsCert, tlsKey string
	tls                    *tls.Config // nil: plaintext
}

const defaultAddr = "127.0.0.1:1337"

const rootLong = `gridctl operates a gridd cluster from the shell: it shows the cluster's
members and leader, adds and removes nodes and moves leadership; lists,
inspects, updates, watches and closes sessions; submits tasks from a file or
stdin and prints their results; shows and cancels tasks; lists, retries and
purges dead letters; sets, updates, reads and deletes a session's shared
data; lists the connected workers; and benchmarks the cluster end to end.

It talks to the nodes given by --addr (or GRIDCTL_ADDR), trying each until one
answers; any node will do, because followers forward writes to the leader.
An API key is sent with --api-key (or GRIDCTL_API_KEY).`

const rootExample = `  gridctl cluster status
  gridctl --addr 127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339 cluster members
  gridctl session list --all --output json
  gridctl session update 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --priority 8 --max-workers 16
  seq 1000 | gridctl submit --max-attempts 2 --retry-backoff 1s > results.tsv
  gridctl task show --session 01J9ZQ3V6X6M6P3N4V6ZB0D2QK 17 42
  gridctl task cancel --session 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --all
  gridctl shared update 01J9ZQ3V6X6M6P3N4V6ZB0D2QK params.bin --ttl 1h
  gridctl bench --tasks 200000 --batch 100 --workers 4`

func newRootCmd(lookupEnv func(string) (string, bool)) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "gridctl",
		Short:         "Operate a gridd cluster: members, sessions, tasks, dead letters, shared data, benchmarks",
		Long:          rootLong,
		Example:       rootExample,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.resolve(cmd.Flags(), lookupEnv)
		},
	}
	fs := root.PersistentFlags()
	fs.StringSliceVar(&g.addrs, "addr", []string{defaultAddr}, "gridd gRPC addresses, comma-separated, tried in order (env GRIDCTL_ADDR)")
	fs.StringVar(&g.apiKey, "api-key", "", "API key sent as api_key metadata (env GRIDCTL_API_KEY)")
	fs.StringVarP(&g.output, "output", "o", "table", "output format: table or json (protojson, one document)")
	fs.DurationVar(&g.timeout, "timeout", defaultTimeout, "how long to wait for each address to answer")
	// Transport security (TLS).
	fs.StringVar(&g.tlsCA, "tls-ca", "", "PEM CA that gridd's certificate is verified against; turns on TLS (env GRIDCTL_TLS_CA)")
	fs.StringVar(&g.tlsCert, "tls-cert", "", "PEM client certificate for gridd nodes that require one (mTLS); turns on TLS (env GRIDCTL_TLS_CERT)")
	fs.StringVar(&g.tlsKey, "tls-key", "", "PEM private key of --tls-cert (env GRIDCTL_TLS_KEY)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	})
	root.AddCommand(newClusterCmd(g), newSessionCmd(g), newTaskCmd(g))
	root.AddCommand(newSubmitCmd(g), newDLQCmd(g), newSharedCmd(g), newWorkersCmd(g), newBenchCmd(g), newKeysCmd())
	root.AddCommand(newCertsCmd())
	return root
}

// resolve fills --addr and --api-key from the environment when the flags
// are absent, then checks the globals. The key is read here rather than
// made the flag's default, so that --help never prints it.
func (g *globals) resolve(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	if v, ok := lookupEnv("GRIDCTL_ADDR"); ok && !fs.Changed("addr") {
		g.addrs = strings.Split(v, ",")
	}
	if v, ok := lookupEnv("GRIDCTL_API_KEY"); ok && !fs.Changed("api-key") {
		g.apiKey = v
	}
	var addrs []string
	for _, a := range g.addrs {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("--addr %q: want host:port, such as %s", a, defaultAddr)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return errors.New("no address to talk to: give --addr host:port or set GRIDCTL_ADDR")
	}
	g.addrs = addrs
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("--output %q: want table or json", g.output)
	}
	if g.timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration such as 5s", g.timeout)
	}
	return g.resolveTLS(fs, lookupEnv)
}

// group is a command that only holds subcommands: alone it prints its
// help, and an unknown subcommand is an error.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(subs...)
	return c
}
