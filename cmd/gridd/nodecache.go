package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gridd/gridd/cache"
	"github.com/gridd/gridd/tlsconf"
)

// nodecacheEnvPrefix: every nodecache flag can come from GRIDD_NODECACHE_<FLAG>.
const nodecacheEnvPrefix = "GRIDD_NODECACHE_"

const nodecacheLongHelp = `gridd nodecache runs the node cache: a pull-through cache of shared data on a
compute node. Workers read a session's shared data from it (the Cache service's
GetSharedData on --addr); a level it holds is served from memory, a level it
does not hold is fetched once, however many workers ask at the same time, and
kept in an LRU bounded by --cache-size. A level larger than the cache is
streamed through without being kept.

Node caches find each other with memberlist (--bind, --join). Each level has
an owner among the live node caches (rendezvous hashing of session and level):
on a miss a node cache asks the owner, and only the owner reads the central
cache, so a new level reaches N nodes with one central read. If the owner does
not answer, the node cache reads the central cache itself. --bind "" runs
without peers.

A request for the latest level (update level 0) always asks the central cache
which level is the latest, so a reader never sees levels go backwards; the
data itself still comes from memory or a peer when they have it. Levels
expire when the central cache said they would. Writes (Set, Update, Delete)
go to the central cache: the node cache answers them Unimplemented.

With --tls-cert and --tls-key the node cache serves TLS, and it calls the
central cache and its peers over TLS, presenting that certificate and
verifying theirs against --tls-ca (the cluster's CA); the certificate must name
the address peers dial (--advertise-addr). --gossip-key (base64 of 16, 24 or
32 bytes, the same on every node cache) encrypts memberlist gossip; without it
anyone who reaches --bind can join the group.

Every flag can also be set with GRIDD_NODECACHE_<FLAG> (upper-case, '-'
becomes '_').`

const nodecacheExampleHelp = `  # One node cache per compute node, in front of a 3-node cluster:
  gridd nodecache --central 10.0.0.1:1337,10.0.0.2:1337,10.0.0.3:1337 \
    --cache-size 4GiB --join 10.0.1.1:7946

  # Three node caches on one machine (loopback):
  gridd nodecache --addr 127.0.0.1:23337 --bind 127.0.0.1:27946 --metrics-addr 127.0.0.1:28082 --central 127.0.0.1:21337
  gridd nodecache --addr 127.0.0.1:23338 --bind 127.0.0.1:27947 --metrics-addr 127.0.0.1:28083 --central 127.0.0.1:21337 --join 127.0.0.1:27946
  gridd nodecache --addr 127.0.0.1:23339 --bind 127.0.0.1:27948 --metrics-addr 127.0.0.1:28084 --central 127.0.0.1:21337 --join 127.0.0.1:27946`

type nodecacheOptions struct {
	Central       string
	Addr          string
	AdvertiseAddr string
	CacheSize     byteSize
	Bind          string
	Advertise     string
	Join          []string
	Name          string
	MetricsAddr   string
	FetchTimeout  time.Duration
	CentralRetry  time.Duration
	LogLevel      string
	LogFormat     string

	// Transport security (TLS, gossip encryption).
	TLSCert       string
	TLSKey        string
	TLSCA         string
	TLSClientAuth string
	GossipKey     string
}

func newNodecacheCmd(lookupEnv func(string) (string, bool), stderr io.Writer) *cobra.Command {
	var o nodecacheOptions
	cmd := &cobra.Command{
		Use:           "nodecache --central ADDRS",
		Short:         "Run a node cache: pull-through cache of shared data, shared with peer node caches",
		Long:          nodecacheLongHelp,
		Example:       nodecacheExampleHelp,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags(cmd.Flags(), nodecacheEnvPrefix, lookupEnv); err != nil {
				return err
			}
			cfg, err := o.resolve()
			if err != nil {
				return err
			}
			logger := newLogger(stderr, o.LogLevel, o.LogFormat)
			cfg.Logger = logger
			svc, err := cache.Start(cfg)
			if err != nil {
				return err
			}
			if cfg.TLS != nil {
				stop := reloadTLS(cfg.TLS, logger.With("component", "nodecache"))
				defer stop()
			}
			<-cmd.Context().Done()
			logger.Info("node cache stopping", "component", "nodecache")
			return svc.Close()
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (see gridd nodecache --help)", err)
	})
	fs := cmd.Flags()
	fs.StringVar(&o.Central, "central", "127.0.0.1:1337", "gRPC addresses of gridd nodes (the central cache), comma-separated; any node answers")
	fs.StringVar(&o.Addr, "addr", ":3337", "listen address of the node cache's Cache service (workers and peers)")
	fs.StringVar(&o.AdvertiseAddr, "advertise-addr", "", "gRPC address peers dial (default: --addr, with a wildcard host replaced by the memberlist IP)")
	o.CacheSize = 1 << 30
	fs.Var(&o.CacheSize, "cache-size", "bytes of shared data kept in memory (suffixes KB, MB, GB, KiB, MiB, GiB allowed)")
	fs.StringVar(&o.Bind, "bind", ":7946", `memberlist address (TCP and UDP) for finding peer node caches; "" runs without peers`)
	fs.StringVar(&o.Advertise, "advertise", "", "memberlist address peers reach this one at (default: the bind address, or a private IP when it is a wildcard)")
	fs.StringSliceVar(&o.Join, "join", nil, "memberlist addresses of running node caches to join (comma-separated or repeated); none: start a new group")
	fs.StringVar(&o.Name, "name", "", "member name, unique among node caches and stable across restarts (default: hostname/advertised address)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":8082", `HTTP address of /metrics and /healthz; "" disables`)
	fs.DurationVar(&o.FetchTimeout, "fetch-timeout", 5*time.Minute, "longest one fetch of a level from a peer or the central cache may take")
	fs.DurationVar(&o.CentralRetry, "central-retry", 10*time.Second, "how long a read waits while no central cache node answers (an election, a restart)")
	fs.StringVar(&o.LogLevel, "log-level", defaultLogLevel, "debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", defaultLogFormat, "text or json")
	// Transport security (TLS, gossip encryption).
	fs.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate; with --tls-key serves TLS and uses it towards the central cache and peers (reloaded when the files change)")
	fs.StringVar(&o.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.TLSCA, "tls-ca", "", "PEM CA the central cache's, peers' and (with --tls-client-auth) workers' certificates are verified against")
	fs.StringVar(&o.TLSClientAuth, "tls-client-auth", "", "client certificates on --addr: none (the default), request or require")
	fs.StringVar(&o.GossipKey, "gossip-key", "", "base64 key (16, 24 or 32 bytes) encrypting memberlist gossip; the same on every node cache")
	fs.SortFlags = false
	return cmd
}

// envFlags sets every flag not given on the command line from
// PREFIX<FLAG>, if set; an error names the variable.
func envFlags(fs *pflag.FlagSet, prefix string, lookupEnv func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookupEnv(name); ok && !f.Changed && f.Name != "help" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// resolve checks the options; each error names the flag.
func (o *nodecacheOptions) resolve() (cache.ServiceConfig, error) {
	var cfg cache.ServiceConfig
	var central []string
	for _, a := range strings.Split(o.Central, ",") {
		if a = strings.TrimSpace(a); a != "" {
			central = append(central, a)
		}
	}
	switch {
	case len(central) == 0:
		return cfg, errors.New("--central: no address given: the gRPC address of at least one gridd node")
	case o.CacheSize <= 0:
		return cfg, fmt.Errorf("--cache-size: %d is not positive (like 1GB or 512MiB)", o.CacheSize)
	case o.Addr == "":
		return cfg, errors.New("--addr: empty; the node cache needs a listen address (like :3337)")
	case o.FetchTimeout <= 0:
		return cfg, fmt.Errorf("--fetch-timeout: %s is not positive", o.FetchTimeout)
	case o.CentralRetry <= 0:
		return cfg, fmt.Errorf("--central-retry: %s is not positive", o.CentralRetry)
	case o.Bind == "" && len(o.Join) > 0:
		return cfg, errors.New(`--join needs peers: --bind "" turns them off`)
	}
	if _, ok := logLevels[strings.ToLower(o.LogLevel)]; !ok {
		return cfg, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", o.LogLevel)
	}
	if f := strings.ToLower(o.LogFormat); f != "text" && f != "json" {
		return cfg, fmt.Errorf("--log-format: %q is not one of text, json", o.LogFormat)
	}
	tlsSrc, gossipKey, err := o.security()
	if err != nil {
		return cfg, err
	}
	cfg = cache.ServiceConfig{TLS: tlsSrc, GossipKey: gossipKey, Addr: o.Addr, AdvertiseAddr: o.AdvertiseAddr, MetricsAddr: o.MetricsAddr,
		PeerBind: o.Bind, PeerAdvertise: o.Advertise, Join: o.Join, Name: o.Name,
		Cache: cache.Config{MaxBytes: int64(o.CacheSize), Central: central, FetchTimeout: o.FetchTimeout, CentralRetry: o.CentralRetry}}
	return cfg, nil
}

// security loads the TLS files and decodes the gossip key; each error
// names its flag.
func (o *nodecacheOptions) security() (*tlsconf.Source, []byte, error) {
	var key []byte
	if o.GossipKey != "" {
		var err error
		if key, err = base64.StdEncoding.DecodeString(strings.TrimSpace(o.GossipKey)); err != nil {
			return nil, nil, fmt.Errorf("--gossip-key: not base64 (make one with: head -c 32 /dev/urandom | base64): %w", err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, nil, fmt.Errorf("--gossip-key: %d bytes; want 16, 24 or 32 (make one with: head -c 32 /dev/urandom | base64)", n)
		}
		if o.Bind == "" {
			return nil, nil, errors.New(`--gossip-key needs peers: --bind "" turns them off`)
		}
	}
	auth, err := tlsconf.ParseClientAuth(o.TLSClientAuth)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-client-auth: %w", err)
	}
	if o.TLSCert == "" && o.TLSKey == "" {
		if o.TLSCA != "" || auth != tlsconf.ClientAuthNone {
			return nil, nil, errors.New("--tls-ca and --tls-client-auth need --tls-cert and --tls-key")
		}
		return nil, key, nil
	}
	src, err := tlsconf.Load(tlsconf.Files{Cert: o.TLSCert, Key: o.TLSKey, CA: o.TLSCA}, auth)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-cert/--tls-key/--tls-ca: %w", err)
	}
	return src, key, nil
}
