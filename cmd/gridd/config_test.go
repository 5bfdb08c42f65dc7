package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// load resolves settings the way gridd does: args parsed as flags, env as
// the environment, and yaml (when not empty) written to a file named by
// GRIDD_CONFIG unless args name one.
func load(t *testing.T, args []string, env map[string]string, yamlText string) (*options, map[string]origin, string, error) {
	t.Helper()
	fs := pflag.NewFlagSet("gridd", pflag.ContinueOnError)
	var o options
	registerFlags(fs, &o, "host-a")
	path := ""
	if yamlText != "" {
		path = filepath.Join(t.TempDir(), "gridd.yaml")
		if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
			t.Fatal(err)
		}
		env = mergeEnv(env, map[string]string{"GRIDD_CONFIG": path})
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, path, err
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	origins, err := resolve(fs, lookup)
	if err == nil {
		err = validate(&o, origins)
	}
	return &o, origins, path, err
}

func mergeEnv(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

func TestDefaults(t *testing.T) {
	o, origins, _, err := load(t, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := options{
		ID: "host-a", DataDir: "./gridd-data", GRPCAddr: "127.0.0.1:1337",
		RaftAddr: "127.0.0.1:7337", MetricsAddr: "127.0.0.1:8080",
		LogLevel: "info", LogFormat: "text",
		MaxPayloadBytes: 4 << 20, MaxBatchTasks: 10_000, ClientExitGrace: 30 * time.Second,
		Preemption: "drain", SchedulerInterval: time.Second,
		MaxSharedDataBytes: 256 << 20, MaxSharedDataTTL: 7 * 24 * time.Hour, DefaultSharedDataTTL: 24 * time.Hour,
		SharedDataKeepLevels: 2,
		// Observability (H11).
		MetricsSessions: 100,
		// Limits (H13).
		MaxPendingPerSession: 1_000_000,
	}
	if !reflect.DeepEqual(*o, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", *o, want)
	}
	if len(origins) != 0 {
		t.Fatalf("defaults have origins %v", origins)
	}
}

func TestPrecedence(t *testing.T) {
	const file = "data-dir: from-file\nmax-batch-tasks: 7\njoin: [10.0.0.1:1337, 10.0.0.2:1337]\nheartbeat-timeout: 2s\nelection-timeout: 3s\n"
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		yaml  string
		check func(*options) bool
		from  map[string]string // setting -> origin kind
	}{
		{
			name: "file over default",
			yaml: file,
			check: func(o *options) bool {
				return o.DataDir == "from-file" && o.MaxBatchTasks == 7 && o.HeartbeatTimeout == 2*time.Second
			},
			from: map[string]string{"data-dir": "file", "max-batch-tasks": "file", "join": "file"},
		},
		{
			name: "env over file",
			env:  map[string]string{"GRIDD_DATA_DIR": "from-env", "GRIDD_JOIN": "10.0.0.9:1,10.0.0.8:2"},
			yaml: file,
			check: func(o *options) bool {
				return o.DataDir == "from-env" && o.MaxBatchTasks == 7 && len(o.Join) == 2 && o.Join[0] == "10.0.0.9:1"
			},
			from: map[string]string{"data-dir": "env", "max-batch-tasks": "file", "join": "env"},
		},
		{
			name: "flag over env and file",
			args: []string{"--data-dir", "from-flag", "--join", "10.0.0.5:1", "--join", "10.0.0.6:1"},
			env:  map[string]string{"GRIDD_DATA_DIR": "from-env", "GRIDD_JOIN": "10.0.0.9:1"},
			yaml: file,
			check: func(o *options) bool {
				return o.DataDir == "from-flag" && reflect.DeepEqual(o.Join, []string{"10.0.0.5:1", "10.0.0.6:1"})
			},
			from: map[string]string{"data-dir": "flag", "join": "flag"},
		},
		{
			name:  "env over default without file",
			env:   map[string]string{"GRIDD_MAX_PAYLOAD_BYTES": "1MiB", "GRIDD_LOG_FORMAT": "json"},
			check: func(o *options) bool { return o.MaxPayloadBytes == 1<<20 && o.LogFormat == "json" },
			from:  map[string]string{"max-payload-bytes": "env", "log-format": "env"},
		},
		{
			name:  "config flag over GRIDD_CONFIG",
			args:  []string{"--config", "/does/not/matter"},
			env:   map[string]string{"GRIDD_CONFIG": "/nonexistent"},
			check: nil, // the flag's file does not exist: proves it was used
		},
		{
			name:  "empty env value is a value",
			env:   map[string]string{"GRIDD_METRICS_ADDR": ""},
			yaml:  "metrics-addr: 127.0.0.1:9999\n",
			check: func(o *options) bool { return o.MetricsAddr == "" },
			from:  map[string]string{"metrics-addr": "env"},
		},
		// Limits (H13).
		{
			name:  "limits from env and file",
			env:   map[string]string{"GRIDD_MAX_PENDING_PER_SESSION": "0"},
			yaml:  "max-sessions-per-app: 12\n",
			check: func(o *options) bool { return o.MaxPendingPerSession == 0 && o.MaxSessionsPerApp == 12 },
			from:  map[string]string{"max-pending-per-session": "env", "max-sessions-per-app": "file"},
		},
		{
			name:  "empty list in file clears join",
			args:  nil,
			yaml:  "join: []\n",
			check: func(o *options) bool { return len(o.Join) == 0 },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, origins, _, err := load(t, tc.args, tc.env, tc.yaml)
			if tc.check == nil {
				if err == nil || !strings.Contains(err.Error(), "/does/not/matter") {
					t.Fatalf("want an error about /does/not/matter, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(o) {
				t.Fatalf("wrong values: %+v", *o)
			}
			for name, kind := range tc.from {
				if origins[name].kind != kind {
					t.Errorf("%s came from %q, want %q", name, origins[name].kind, kind)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		yaml string
		is   error
		says []string // substrings a person needs: the key, the file, the fix
	}{
		{name: "unknown key", yaml: "data-dir: d\ndata_dir: d2\n", is: errUnknownKey, says: []string{`"data_dir"`, "line 2", `did you mean "data-dir"`}},
		{name: "typo", yaml: "raft-adr: 127.0.0.1:1\n", is: errUnknownKey, says: []string{`"raft-addr"`}},
		{name: "config in config", yaml: "config: other.yaml\n", is: errUnknownKey, says: []string{"cannot name another"}},
		{name: "bad int in file", yaml: "\nmax-batch-tasks: lots\n", is: errBadValue, says: []string{"line 2", `"max-batch-tasks"`, `"lots"`, "integer"}},
		{name: "bad duration in file", yaml: "election-timeout: 5\n", is: errBadValue, says: []string{"election-timeout", "500ms"}},
		{name: "bad size in env", env: map[string]string{"GRIDD_MAX_PAYLOAD_BYTES": "4 parsecs"}, is: errBadValue, says: []string{"GRIDD_MAX_PAYLOAD_BYTES", "MiB"}},
		{name: "negative size in file", yaml: "max-batch-tasks: -5\n", is: errInvalid, says: []string{`"max-batch-tasks"`, "line 1", "not positive"}},
		{name: "zero grace in env", env: map[string]string{"GRIDD_CLIENT_EXIT_GRACE": "0s"}, is: errInvalid, says: []string{"GRIDD_CLIENT_EXIT_GRACE", "not positive"}},
		{name: "zero payload flag", args: []string{"--max-payload-bytes", "0"}, is: errInvalid, says: []string{"--max-payload-bytes"}},
		{name: "list for one value", yaml: "data-dir: [a, b]\n", is: errConfigFile, says: []string{`"data-dir"`, "not a list"}},
		{name: "mapping value", yaml: "data-dir: {a: b}\n", is: errConfigFile, says: []string{"not a mapping"}},
		{name: "null value", yaml: "metrics-addr:\n", is: errConfigFile, says: []string{`""`}},
		{name: "duplicate key", yaml: "id: a\nid: b\n", is: errConfigFile, says: []string{"line 2", "line 1"}},
		{name: "not a mapping", yaml: "- data-dir\n", is: errConfigFile, says: []string{"data-dir: d1"}},
		{name: "two documents", yaml: "id: a\n---\nid: b\n", is: errConfigFile, says: []string{"more than one"}},
		{name: "broken yaml", yaml: "id: [a\n", is: errConfigFile, says: []string{"yaml"}},
		{name: "address without port", args: []string{"--grpc-addr", "localhost"}, is: errInvalid, says: []string{"--grpc-addr", "host:port"}},
		{name: "port out of range", env: map[string]string{"GRIDD_RAFT_ADDR": "127.0.0.1:70000"}, is: errInvalid, says: []string{"GRIDD_RAFT_ADDR", "65535"}},
		{name: "wildcard raft without advertise", args: []string{"--raft-addr", "0.0.0.0:7337"}, is: errInvalid, says: []string{"advertise-raft-addr"}},
		{name: "advertise wildcard", args: []string{"--raft-addr", "0.0.0.0:7337", "--advertise-raft-addr", "0.0.0.0:7337"}, is: errInvalid, says: []string{"--advertise-raft-addr", "dialled"}},
		{name: "join port 0", yaml: "join: 10.0.0.1:0\n", is: errInvalid, says: []string{`"join"`, "port"}},
		{name: "join bad host", args: []string{"--join", "no pe:1"}, is: errInvalid, says: []string{"--join", "host name"}},
		{name: "preemption mode", env: map[string]string{"GRIDD_PREEMPTION": "now"}, is: errInvalid, says: []string{"GRIDD_PREEMPTION", "drain, immediate"}},
		{name: "scheduler interval", yaml: "scheduler-interval: 1ms\n", is: errInvalid, says: []string{`"scheduler-interval"`, "10ms"}},
		{name: "metrics sessions", args: []string{"--metrics-sessions", "-1"}, is: errInvalid, says: []string{"--metrics-sessions", "0 (totals only)"}},
		{name: "pprof without metrics", args: []string{"--pprof", "--metrics-addr", ""}, is: errInvalid, says: []string{"--pprof", "--metrics-addr"}},
		{name: "log level", args: []string{"--log-level", "loud"}, is: errInvalid, says: []string{"debug, info, warn, error"}},
		{name: "log format", env: map[string]string{"GRIDD_LOG_FORMAT": "xml"}, is: errInvalid, says: []string{"GRIDD_LOG_FORMAT", "text, json"}},
		{name: "empty id", args: []string{"--id", ""}, is: errInvalid, says: []string{"--id"}},
		{name: "id with space", yaml: "id: a b\n", is: errInvalid, says: []string{`"id"`, "space"}},
		{name: "tiny timeout", args: []string{"--heartbeat-timeout", "1ms"}, is: errInvalid, says: []string{"--heartbeat-timeout", "5ms"}},
		{name: "lease over heartbeat", args: []string{"--heartbeat-timeout", "100ms", "--leader-lease-timeout", "200ms"}, is: errInvalid, says: []string{"--leader-lease-timeout", "heartbeat-timeout"}},
		{name: "election under heartbeat", args: []string{"--heartbeat-timeout", "1s", "--election-timeout", "500ms"}, is: errInvalid, says: []string{"--election-timeout"}},
		{name: "heartbeat over default election", env: map[string]string{"GRIDD_HEARTBEAT_TIMEOUT": "2s"}, is: errInvalid, says: []string{"GRIDD_HEARTBEAT_TIMEOUT", "election-timeout 1s"}},
		{name: "lease over default heartbeat", args: []string{"--leader-lease-timeout", "1500ms"}, is: errInvalid, says: []string{"--leader-lease-timeout", "heartbeat-timeout 1s"}},
		{name: "negative threshold", env: map[string]string{"GRIDD_SNAPSHOT_THRESHOLD": "-1"}, is: errBadValue, says: []string{"GRIDD_SNAPSHOT_THRESHOLD", "0 or more"}},
		// Limits (H13).
		{name: "negative pending cap", args: []string{"--max-pending-per-session", "-1"}, is: errInvalid, says: []string{"--max-pending-per-session", "0 means unlimited"}},
		{name: "negative sessions cap", yaml: "max-sessions-per-app: -3\n", is: errInvalid, says: []string{`"max-sessions-per-app"`, "0 means unlimited"}},
		{name: "negative rate", args: []string{"--rate-limit-per-key", "-2"}, is: errInvalid, says: []string{"--rate-limit-per-key", "0 (unlimited)"}},
		{name: "rate without keys", env: map[string]string{"GRIDD_RATE_LIMIT_PER_KEY": "10"}, is: errInvalid, says: []string{"GRIDD_RATE_LIMIT_PER_KEY", "--api-keys-file"}},
		{name: "negative burst", args: []string{"--rate-limit-burst", "-1"}, is: errInvalid, says: []string{"--rate-limit-burst"}},
		{name: "missing file", args: []string{"--config", "/nonexistent/gridd.yaml"}, is: os.ErrNotExist, says: []string{"/nonexistent/gridd.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, path, err := load(t, tc.args, tc.env, tc.yaml)
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want an error wrapping %v", err, tc.is)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if tc.yaml != "" && tc.is != errInvalid && !strings.Contains(msg, path) {
				t.Errorf("error does not name the file %s: %s", path, msg)
			}
			for _, s := range tc.says {
				if !strings.Contains(msg, s) {
					t.Errorf("error does not say %q: %s", s, msg)
				}
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "4MiB": 4 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "3MB": 3e6, "10 B": 10} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
		var again byteSize
		if err := again.Set(b.String()); err != nil || again != b {
			t.Errorf("%q does not round-trip through %q", in, b.String())
		}
	}
	for _, in := range []string{"", "MiB", "1.5MiB", "99999999999GiB", "1 TiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted %d", in, b)
		}
	}
}

// FuzzConfig feeds arbitrary YAML to the config file reader and checks what
// a person relies on: no panic; every rejection names the file and fits on
// one line; every accepted file gives settings that validate and that
// survive being written back out as YAML and read again.
func FuzzConfig(f *testing.F) {
	seeds := []string{
		"", "data-dir: d1\n", "join: [127.0.0.1:1, host:2]\nmax-payload-bytes: 1MiB\n",
		"id: n1\ngrpc-addr: 127.0.0.1:0\nraft-addr: 127.0.0.1:0\nmetrics-addr: \"\"\n",
		"heartbeat-timeout: 100ms\nleader-lease-timeout: 50ms\nelection-timeout: 100ms\n",
		"max-batch-tasks: 0x10\nsnapshot-threshold: 100\n", "a: &x 1\nb: *x\n", "[1, 2]", "~",
		"data_dir: x\n", "id: a\n---\nid: b\n", "log-level: DEBUG\nlog-format: JSON\n",
		"join: \"10.0.0.1:1,10.0.0.2:2\"\n", "raft-addr: 0.0.0.0:1\nadvertise-raft-addr: n1:1\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	noEnv := func(string) (string, bool) { return "", false }
	f.Fuzz(func(t *testing.T, data []byte) {
		o, origins, err := fuzzLoad(data, noEnv)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "fuzz.yaml") || strings.Contains(msg, "\n") {
				t.Fatalf("error must name the file on one line: %q", msg)
			}
			return
		}
		cfg := serverConfig(o, nil)
		if cfg.MaxPayloadBytes <= 0 || cfg.MaxBatchTasks <= 0 || cfg.ID == "" || cfg.DataDir == "" {
			t.Fatalf("accepted a config with a non-positive size or empty name: %+v", cfg)
		}
		again, _, err := fuzzLoad(render(t, o, origins), noEnv)
		if err != nil {
			t.Fatalf("written-out config does not load: %v", err)
		}
		if !reflect.DeepEqual(o, again) {
			t.Fatalf("round trip changed the settings:\n%+v\n%+v", *o, *again)
		}
	})
}

func fuzzLoad(data []byte, env func(string) (string, bool)) (*options, map[string]origin, error) {
	fs := pflag.NewFlagSet("gridd", pflag.ContinueOnError)
	var o options
	registerFlags(fs, &o, "fuzz-host")
	file, err := parseConfigFile(fs, "fuzz.yaml", data)
	if err != nil {
		return nil, nil, err
	}
	origins, err := apply(fs, env, "fuzz.yaml", file)
	if err == nil {
		err = validate(&o, origins)
	}
	return &o, origins, err
}

// render writes the settings that came from the file back out as YAML.
func render(t *testing.T, o *options, origins map[string]origin) []byte {
	fs := pflag.NewFlagSet("render", pflag.ContinueOnError)
	var shadow options
	registerFlags(fs, &shadow, "fuzz-host")
	out := map[string]any{}
	fs.VisitAll(func(f *pflag.Flag) {
		if _, ok := origins[f.Name]; !ok {
			return
		}
		if f.Name == "join" {
			out[f.Name] = o.Join
			return
		}
		out[f.Name] = valueOf(o, f.Name)
	})
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// valueOf prints one setting of o through a flag bound to it.
func valueOf(o *options, name string) string {
	fs := pflag.NewFlagSet("value", pflag.ContinueOnError)
	copied := *o
	registerFlags(fs, &copied, copied.ID)
	// registerFlags resets fields to their defaults; put the values back.
	copied = *o
	return fs.Lookup(name).Value.String()
}
