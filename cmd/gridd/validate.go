package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/server"
)

// Raft refuses timeouts below 5ms (raft.ValidateConfig); checking here says
// which setting to change before anything is opened.
const minRaftTimeout = 5 * time.Millisecond

// The scheduler runs on events anyway; the tick only catches idle timeouts
// and lost instructions, so faster than 10ms only burns CPU and slower than
// a minute makes idle timeouts meaningless.
const (
	minSchedInterval = 10 * time.Millisecond
	maxSchedInterval = time.Minute
)

// maxPayloadBytes: a task payload travels in one protobuf message, and
// protobuf cannot encode a message of 2 GiB or more.
const maxPayloadBytes = 2<<30 - 1

// validate checks every setting, so that gridd fails before it opens its
// data dir rather than half way through start-up. Errors name the setting
// and where its value came from.
func validate(o *options, origins map[string]origin) error {
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", origins[name].describe(name), errInvalid, fmt.Sprintf(format, args...))
	}
	if err := validateID(o.ID); err != nil {
		return bad("id", "%s", err)
	}
	if strings.TrimSpace(o.DataDir) == "" {
		return bad("data-dir", "must name a directory")
	}
	if err := validateAddrs(o, bad); err != nil {
		return err
	}
	if err := validateTLS(o, bad); err != nil {
		return err
	}
	if _, ok := logLevels[strings.ToLower(o.LogLevel)]; !ok {
		return bad("log-level", "%q is not one of debug, info, warn, error", o.LogLevel)
	}
	if f := strings.ToLower(o.LogFormat); f != "text" && f != "json" {
		return bad("log-format", "%q is not one of text, json", o.LogFormat)
	}
	if o.MaxPayloadBytes <= 0 || o.MaxPayloadBytes > maxPayloadBytes {
		return bad("max-payload-bytes", "%d is not between 1 and %d (protobuf's limit)", o.MaxPayloadBytes, maxPayloadBytes)
	}
	if o.MaxBatchTasks <= 0 {
		return bad("max-batch-tasks", "%d is not positive", o.MaxBatchTasks)
	}
	if o.ClientExitGrace <= 0 {
		return bad("client-exit-grace", "%s is not positive", o.ClientExitGrace)
	}
	if o.MaxSharedDataBytes <= 0 || o.MaxSharedDataBytes > fsm.MaxSharedDataSize {
		return bad("max-shared-data-bytes", "%d is not between 1 and %d", o.MaxSharedDataBytes, int64(fsm.MaxSharedDataSize))
	}
	if o.MaxSharedDataTTL <= 0 {
		return bad("max-shared-data-ttl", "%s is not positive", o.MaxSharedDataTTL)
	}
	if o.DefaultSharedDataTTL <= 0 || o.DefaultSharedDataTTL > o.MaxSharedDataTTL {
		return bad("shared-data-ttl", "%s is not between 0 and --max-shared-data-ttl (%s)", o.DefaultSharedDataTTL, o.MaxSharedDataTTL)
	}
	if o.SharedDataKeepLevels < 1 || o.SharedDataKeepLevels > 100 {
		return bad("shared-data-keep-levels", "%d is not between 1 and 100", o.SharedDataKeepLevels)
	}
	if _, err := dispatch.ParsePreemption(o.Preemption); err != nil {
		return bad("preemption", "%s", err)
	}
	if o.SchedulerInterval < minSchedInterval || o.SchedulerInterval > maxSchedInterval {
		return bad("scheduler-interval", "%s is not between %s and %s", o.SchedulerInterval, minSchedInterval, maxSchedInterval)
	}
	// Observability (H11).
	if o.MetricsSessions < 0 || o.MetricsSessions > maxMetricsSessions {
		return bad("metrics-sessions", "%d is not between 0 (totals only) and %d", o.MetricsSessions, maxMetricsSessions)
	}
	// Limits (H13).
	if o.MaxPendingPerSession < 0 {
		return bad("max-pending-per-session", "%d is negative (0 means unlimited)", o.MaxPendingPerSession)
	}
	if o.MaxSessionsPerApp < 0 {
		return bad("max-sessions-per-app", "%d is negative (0 means unlimited)", o.MaxSessionsPerApp)
	}
	if o.RateLimitPerKey < 0 || math.IsNaN(o.RateLimitPerKey) || math.IsInf(o.RateLimitPerKey, 0) {
		return bad("rate-limit-per-key", "%g is not a rate of 0 (unlimited) or more calls per second", o.RateLimitPerKey)
	}
	if o.RateLimitBurst < 0 {
		return bad("rate-limit-burst", "%d is negative (0 means one second's worth)", o.RateLimitBurst)
	}
	if o.RateLimitPerKey > 0 && o.APIKeysFile == "" {
		return bad("rate-limit-per-key", "counts calls per API key: set --api-keys-file too")
	}
	if o.Pprof && o.MetricsAddr == "" {
		return bad("pprof", "needs the metrics listener: set --metrics-addr")
	}
	return validateRaft(o, bad)
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo,
	"warn": slog.LevelWarn, "error": slog.LevelError,
}

func validateID(id string) error {
	if id == "" {
		return errors.New("is empty: set --id (the hostname was not usable)")
	}
	if len(id) > 256 {
		return fmt.Errorf("is %d bytes long, more than 256", len(id))
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q has a space or unprintable character", id)
		}
	}
	return nil
}

func validateAddrs(o *options, bad func(string, string, ...any) error) error {
	listen := []struct {
		name, addr, advertiseName, advertise string
	}{
		{"grpc-addr", o.GRPCAddr, "advertise-grpc-addr", o.AdvertiseGRPCAddr},
		{"raft-addr", o.RaftAddr, "advertise-raft-addr", o.AdvertiseRaftAddr},
	}
	for _, l := range listen {
		host, err := parseHostPort(l.addr, false)
		if err != nil {
			return bad(l.name, "%s", err)
		}
		if l.advertise != "" {
			if _, err := parseHostPort(l.advertise, true); err != nil {
				return bad(l.advertiseName, "%s", err)
			}
		} else if unspecified(host) {
			// Peers store and dial this address: 0.0.0.0 would send them
			// to themselves.
			return bad(l.name, "%q listens on every interface, so others cannot tell which address to dial: set %s too", l.addr, l.advertiseName)
		}
	}
	if o.MetricsAddr != "" {
		if _, err := parseHostPort(o.MetricsAddr, false); err != nil {
			return bad("metrics-addr", "%s", err)
		}
	}
	if o.CacheAddr != "" {
		if _, err := parseHostPort(o.CacheAddr, false); err != nil {
			return bad("cache-addr", "%s", err)
		}
	}
	for _, j := range o.Join {
		if _, err := parseHostPort(j, true); err != nil {
			return bad("join", "%s", err)
		}
	}
	return nil
}

// parseHostPort checks a host:port address. A dial address (dial=true)
// needs a host that can be dialled and a non-zero port; a listen address
// may leave the host empty and use port 0 for "any free port".
func parseHostPort(addr string, dial bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not a host:port address such as 127.0.0.1:1337", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if !validHost(host) {
		return "", fmt.Errorf("%q: %q is neither an IP address nor a host name", addr, host)
	}
	if dial && (p == 0 || unspecified(host)) {
		return "", fmt.Errorf("%q cannot be dialled: give a reachable host and a port other than 0", addr)
	}
	return host, nil
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

// validHost accepts IP addresses and DNS names; it keeps out what would
// only fail later inside a dialer, with a less helpful message.
func validHost(host string) bool {
	if host == "" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func validateRaft(o *options, bad func(string, string, ...any) error) error {
	timeouts := []struct {
		name string
		d    time.Duration
	}{
		{"heartbeat-timeout", o.HeartbeatTimeout},
		{"election-timeout", o.ElectionTimeout},
		{"leader-lease-timeout", o.LeaderLeaseTimeout},
		{"snapshot-interval", o.SnapshotInterval},
	}
	for _, t := range timeouts {
		if t.d < 0 || t.d > 0 && t.d < minRaftTimeout {
			return bad(t.name, "%s is below Raft's minimum of %s (0 means the default)", t.d, minRaftTimeout)
		}
	}
	// The relations Raft enforces hold between the values it will use, so
	// a setting left at 0 is checked as its default.
	hb := orDefault(o.HeartbeatTimeout, raftDefaultHeartbeat)
	if lease := orDefault(o.LeaderLeaseTimeout, raftDefaultLease); lease > hb {
		return bad(relName(o.LeaderLeaseTimeout, "leader-lease-timeout", "heartbeat-timeout"),
			"leader-lease-timeout %s is longer than heartbeat-timeout %s, which Raft refuses", lease, hb)
	}
	if el := orDefault(o.ElectionTimeout, raftDefaultElection); el < hb {
		return bad(relName(o.ElectionTimeout, "election-timeout", "heartbeat-timeout"),
			"election-timeout %s is shorter than heartbeat-timeout %s, which Raft refuses", el, hb)
	}
	return nil
}

// The defaults the cluster package gives Raft for zero timings
// (cluster/config.go); used only to check relations early.
const (
	raftDefaultHeartbeat = time.Second
	raftDefaultElection  = time.Second
	raftDefaultLease     = 500 * time.Millisecond
)

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// relName picks the setting to blame: the one given, or else the other.
func relName(d time.Duration, name, other string) string {
	if d != 0 {
		return name
	}
	return other
}

// serverConfig turns checked options into what server.Start takes.
func serverConfig(o *options, logger *slog.Logger) server.Config {
	preemption, _ := dispatch.ParsePreemption(o.Preemption) // checked by validate
	return server.Config{
		ID:                   o.ID,
		DataDir:              o.DataDir,
		GRPCAddr:             o.GRPCAddr,
		AdvertiseGRPCAddr:    o.AdvertiseGRPCAddr,
		RaftAddr:             o.RaftAddr,
		AdvertiseRaftAddr:    o.AdvertiseRaftAddr,
		MetricsAddr:          o.MetricsAddr,
		Join:                 append([]string(nil), o.Join...),
		HeartbeatTimeout:     o.HeartbeatTimeout,
		ElectionTimeout:      o.ElectionTimeout,
		LeaderLeaseTimeout:   o.LeaderLeaseTimeout,
		SnapshotThreshold:    o.SnapshotThreshold,
		SnapshotInterval:     o.SnapshotInterval,
		TrailingLogs:         o.TrailingLogs,
		MaxPayloadBytes:      int(o.MaxPayloadBytes),
		MaxBatchTasks:        o.MaxBatchTasks,
		ClientExitGrace:      o.ClientExitGrace,
		CacheAddr:            o.CacheAddr,
		MaxSharedDataBytes:   int64(o.MaxSharedDataBytes),
		MaxSharedDataTTL:     o.MaxSharedDataTTL,
		DefaultSharedDataTTL: o.DefaultSharedDataTTL,
		SharedDataKeepLevels: o.SharedDataKeepLevels,
		Preemption:           preemption,
		SchedulerInterval:    o.SchedulerInterval,
		Logger:               logger,
		// Observability (H11).
		Pprof:           o.Pprof,
		MetricsSessions: metricsSessions(o.MetricsSessions),
		// Limits (H13).
		MaxPendingPerSession: o.MaxPendingPerSession,
		MaxSessionsPerApp:    o.MaxSessionsPerApp,
		RateLimitPerKey:      o.RateLimitPerKey,
		RateLimitBurst:       o.RateLimitBurst,
	}
}

// maxMetricsSessions caps --metrics-sessions: each session adds four
// series to every scrape.
const maxMetricsSessions = 10000

// metricsSessions maps the flag, where 0 means off, to server.Config, where
// 0 means the default.
func metricsSessions(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
