// Package cli holds the command-line plumbing the example programs share:
// the worker/client dispatch, the flags that say how to reach the cluster,
// the logger, and the worker command, which is the same in every example
// but for its task handler.
//
// Each example keeps its own flag names, help texts and messages; this
// package only spares them writing the same code four times.
package cli

import (
	"context"
	"crypto/tls"
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
	"github.com/gridd/gridd/tlsconf"
)

// DefaultAddrs are the nodes `make run` starts.
const DefaultAddrs = "127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339"

// Main runs run with the program's arguments and a context that ends on
// SIGINT or SIGTERM, then exits with the code run returned.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Program is an example command with a worker and a client subcommand.
type Program struct {
	Name   string // as in "<Name>: unknown command"
	Usage  string // printed, followed by a newline, for help and on misuse
	Worker func(ctx context.Context, args []string, stderr io.Writer) int
	Client func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// Run dispatches args[0] to the subcommand and returns the exit code:
// usage on stderr and 2 for a missing or unknown command, usage on stdout
// and 0 for help.
func (p Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, p.Usage)
		return 2
	}
	switch args[0] {
	case "worker":
		return p.Worker(ctx, args[1:], stderr)
	case "client":
		return p.Client(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, p.Usage)
		return 0
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q\n", p.Name, args[0])
		fmt.Fprintln(stderr, p.Usage)
		return 2
	}
}

// NewFlagSet returns a flag set that reports errors on stderr and does not
// exit: Parse's error means exit code 2, the message already printed.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// EnvOr returns the environment variable's value, or def when it is unset
// or empty.
func EnvOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// SplitAddrs splits a comma-separated address list, dropping blanks.
func SplitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Common holds the flags every example command takes: where the cluster
// is, the API key and the log level.
type Common struct {
	Addrs  string // comma-separated gRPC addresses
	APIKey string
	Level  string // debug, info, warn or error
	// LevelFlag is how messages name the log level flag; "" means
	// "--log-level".
	LevelFlag string
	// TLS files (docs/TLS.md); any of them turns TLS on.
	TLSCA, TLSCert, TLSKey string
}

// CommonFlags defines --addr (default $GRIDD_ADDR, else DefaultAddrs),
// --api-key (default $GRIDD_API_KEY) and --log-level (default level) on fs.
func CommonFlags(fs *flag.FlagSet, level string) *Common {
	c := new(Common)
	fs.StringVar(&c.Addrs, "addr", EnvOr("GRIDD_ADDR", DefaultAddrs), "gRPC addresses of gridd nodes, comma-separated (env GRIDD_ADDR)")
	fs.StringVar(&c.APIKey, "api-key", os.Getenv("GRIDD_API_KEY"), "API key (env GRIDD_API_KEY)")
	fs.StringVar(&c.Level, "log-level", level, "debug, info, warn or error")
	fs.StringVar(&c.TLSCA, "tls-ca", os.Getenv("GRIDD_TLS_CA"), "PEM CA of the cluster's certificate; turns on TLS (env GRIDD_TLS_CA)")
	fs.StringVar(&c.TLSCert, "tls-cert", os.Getenv("GRIDD_TLS_CERT"), "PEM client certificate for mTLS (env GRIDD_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", os.Getenv("GRIDD_TLS_KEY"), "PEM key of --tls-cert (env GRIDD_TLS_KEY)")
	return c
}

// TLS is the client TLS configuration of the flags; nil: plaintext.
func (c *Common) TLS() (*tls.Config, error) {
	if c.TLSCA == "" && c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	return tlsconf.StaticClientConfig(c.TLSCA, c.TLSCert, c.TLSKey)
}

// Logger returns a text logger on w at the chosen level, or an error
// naming the flag when the level is not one of the four.
func (c *Common) Logger(w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		name := c.LevelFlag
		if name == "" {
			name = "--log-level"
		}
		return nil, fmt.Errorf("bad %s %q: want debug, info, warn or error", name, c.Level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// Dial connects a client to the cluster with the API key and log.
func (c *Common) Dial(ctx context.Context, log *slog.Logger) (*client.Client, error) {
	tc, err := c.TLS()
	if err != nil {
		return nil, err
	}
	return client.Dial(ctx, SplitAddrs(c.Addrs), client.WithAPIKey(c.APIKey), client.WithLogger(log), client.WithTLS(tc))
}

// TimeoutFlag defines the client's --timeout: how long a run may take.
func TimeoutFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 30*time.Minute, "give up after this long")
}

// Exit prints err after prefix on stderr and returns the exit code for a
// failed run: 130 when it was interrupted, 1 otherwise.
func Exit(stderr io.Writer, prefix string, err error) int {
	fmt.Fprintln(stderr, prefix, err)
	if errors.Is(err, context.Canceled) {
		return 130
	}
	return 1
}

// ProgressLines returns a progress callback printing one line per 10% of
// the results, as "<pct>%  <done>/<total> <unit>".
func ProgressLines(w io.Writer, unit string) func(done, total int) {
	next := 1
	return func(done, total int) {
		for next <= 10 && done*10 >= next*total {
			fmt.Fprintf(w, "%3d%%  %d/%d %s\n", next*10, done, total, unit)
			next++
		}
	}
}
