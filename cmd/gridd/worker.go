package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridd/gridd/execworker"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/tlsconf"
)

const (
	workerAddrEnv   = "GRIDD_WORKER_ADDR"
	workerAPIKeyEnv = "GRIDD_WORKER_API_KEY"
)

const workerLongHelp = `gridd worker runs tasks of a gridd cluster with any program, in any language:
for each task it starts CMD with the task's payload on stdin, and CMD's stdout
becomes the task's result.

  - Exit status 0 is success. Any other status fails the attempt: the error
    carries the status and the last 2 KiB of stderr, and the cluster retries
    the task or dead-letters it after the session's last attempt.
  - --timeout stops a task that runs too long: its whole process group gets
    SIGTERM, then SIGKILL 2s later, and the attempt fails ("timed out after D").
  - Stdout larger than --max-output fails the attempt; a result is never
    truncated.
  - CMD sees GRIDD_TASK_ID, GRIDD_SESSION_ID and GRIDD_ATTEMPT (1 on the
    first try) in its environment, besides the worker's own.

A CMD with spaces runs under /bin/sh -c (quotes, pipes and redirections work);
--shell=false runs it directly, split on spaces. Up to --concurrency tasks run
at once, each in its own process. Execution is at-least-once: after a crash a
task may run again, so CMD should be safe to repeat.

Ctrl-C or SIGTERM drains the worker: it takes no new tasks, lets running ones
finish (at most --drain-timeout) and sends their results before it exits. The
worker follows the cluster's leader across failovers by itself; give it the
addresses of several nodes.`

const workerExampleHelp = `  # Upper-case every payload, 8 tasks at a time, against a local 3-node cluster:
  gridd worker --exec 'tr a-z A-Z' --concurrency 8 \
    --addr 127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339

  # A Python worker: reads the payload from stdin, prints the result.
  export GRIDD_WORKER_ADDR=127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339
  gridd worker --exec 'python3 price.py' --timeout 30s --id pricer-1

  # Fail a task with a message: exit non-zero and explain on stderr.
  gridd worker --exec 'read p; [ -n "$p" ] || { echo "empty payload" >&2; exit 2; }; echo "$p" | rev'`

type workerOptions struct {
	Exec         string
	Addr         string
	Concurrency  int
	Timeout      time.Duration
	ID           string
	Node, Pod    string
	APIKey       string
	DrainTimeout time.Duration
	MaxOutput    byteSize
	Shell        bool
	LogLevel     string
	LogFormat    string

	// Transport security (TLS).
	TLSCA, TLSCert, TLSKey string
}

func newWorkerCmd(lookupEnv func(string) (string, bool), stderr io.Writer) *cobra.Command {
	var o workerOptions
	cmd := &cobra.Command{
		Use:           "worker --exec CMD",
		Short:         "Run tasks with any command: payload on stdin, result on stdout",
		Long:          workerLongHelp,
		Example:       workerExampleHelp,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if v, ok := lookupEnv(workerAddrEnv); ok && !fs.Changed("addr") {
				o.Addr = v
			}
			if v, ok := lookupEnv(workerAPIKeyEnv); ok && !fs.Changed("api-key") {
				o.APIKey = v
			}
			if !fs.Changed("shell") {
				o.Shell = execworker.DefaultShell(o.Exec)
			}
			wopts, cfg, err := o.resolve()
			if err != nil {
				return err
			}
			logger := newLogger(stderr, o.LogLevel, o.LogFormat)
			cfg.Logger = logger
			wopts.Logger = logger
			r, err := execworker.New(cfg)
			if err != nil {
				return fmt.Errorf("--exec %q: %w", o.Exec, err)
			}
			log := logger.With("component", "gridd.worker")
			log.Info("exec worker starting", "argv", r.Argv(), "addrs", wopts.Addrs,
				"concurrency", wopts.Concurrency, "timeout", cfg.Timeout)
			if err := worker.Run(cmd.Context(), wopts, r.Handle); err != nil {
				return err
			}
			log.Info("exec worker stopped")
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (see gridd worker --help)", err)
	})
	fs := cmd.Flags()
	fs.StringVar(&o.Exec, "exec", "", "command run for each task: payload on stdin, result on stdout (required)")
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:1337", "gRPC addresses of cluster nodes, comma-separated (env "+workerAddrEnv+"); the leader is found by itself")
	fs.IntVar(&o.Concurrency, "concurrency", runtime.GOMAXPROCS(0), "tasks run at once, one process each; the default is GOMAXPROCS")
	fs.DurationVar(&o.Timeout, "timeout", 0, "longest a task may run before its process group is killed; 0: no limit")
	fs.StringVar(&o.ID, "id", "", "worker id, unique among running workers (default: hostname-pid-random)")
	fs.StringVar(&o.Node, "node", "", "node the worker runs on, for placement and gridctl workers list (default: env GRIDD_NODE)")
	fs.StringVar(&o.Pod, "pod", "", "pod the worker runs in (default: env GRIDD_POD)")
	fs.StringVar(&o.APIKey, "api-key", "", "API key sent to the cluster (env "+workerAPIKeyEnv+", which keeps it out of ps)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "on Ctrl-C or SIGTERM, how long running tasks may finish before they are killed")
	o.MaxOutput = execworker.DefaultMaxOutput
	fs.Var(&o.MaxOutput, "max-output", "largest result (stdout) of a task; more fails the attempt (suffixes KiB, MiB allowed)")
	fs.BoolVar(&o.Shell, "shell", false, "run CMD with /bin/sh -c (default: true when CMD has spaces)")
	fs.StringVar(&o.LogLevel, "log-level", defaultLogLevel, "debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", defaultLogFormat, "text or json")
	// Transport security (TLS).
	fs.StringVar(&o.TLSCA, "tls-ca", "", "PEM CA the cluster's certificate is verified against; turns on TLS")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "PEM client certificate, for a cluster that requires one (mTLS); turns on TLS")
	fs.StringVar(&o.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.SortFlags = false
	return cmd
}

// resolve checks the options and turns them into the SDK's and the exec
// runner's settings; each error names the flag.
func (o *workerOptions) resolve() (worker.Options, execworker.Config, error) {
	var wo worker.Options
	var cfg execworker.Config
	if strings.TrimSpace(o.Exec) == "" {
		return wo, cfg, errors.New("--exec is required: the command that runs each task (e.g. --exec 'tr a-z A-Z')")
	}
	for _, a := range strings.Split(o.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			wo.Addrs = append(wo.Addrs, a)
		}
	}
	switch {
	case len(wo.Addrs) == 0:
		return wo, cfg, fmt.Errorf("--addr: no address given (or set %s)", workerAddrEnv)
	case o.Concurrency < 1:
		return wo, cfg, fmt.Errorf("--concurrency: %d is not a positive number", o.Concurrency)
	case o.Timeout < 0:
		return wo, cfg, fmt.Errorf("--timeout: %s is negative", o.Timeout)
	case o.DrainTimeout <= 0:
		return wo, cfg, fmt.Errorf("--drain-timeout: %s is not positive", o.DrainTimeout)
	case o.MaxOutput <= 0:
		return wo, cfg, fmt.Errorf("--max-output: %d is not positive", o.MaxOutput)
	}
	if _, ok := logLevels[strings.ToLower(o.LogLevel)]; !ok {
		return wo, cfg, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", o.LogLevel)
	}
	if f := strings.ToLower(o.LogFormat); f != "text" && f != "json" {
		return wo, cfg, fmt.Errorf("--log-format: %q is not one of text, json", o.LogFormat)
	}
	if o.TLSCA != "" || o.TLSCert != "" || o.TLSKey != "" {
		tc, err := tlsconf.StaticClientConfig(o.TLSCA, o.TLSCert, o.TLSKey)
		if err != nil {
			return wo, cfg, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		wo.TLS = tc
	}
	wo.WorkerID, wo.Node, wo.Pod, wo.APIKey = o.ID, o.Node, o.Pod, o.APIKey
	wo.Concurrency, wo.DrainTimeout = o.Concurrency, o.DrainTimeout
	cfg = execworker.Config{Command: o.Exec, Shell: o.Shell, Timeout: o.Timeout, MaxOutput: int64(o.MaxOutput)}
	return wo, cfg, nil
}
