package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// syncBuffer is stderr shared between the node's goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func noEnv(string) (string, bool) { return "", false }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHelpTeaches(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := execute(context.Background(), []string{"--help"}, noEnv, &out, &errOut); code != 0 {
		t.Fatalf("--help exited %d: %s", code, errOut.String())
	}
	for _, s := range []string{"3-node cluster", "--join 127.0.0.1:21337", "GRIDD_DATA_DIR", "--config", "flag wins over"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("help does not mention %q", s)
		}
	}
}

func TestBadSettingsFailBeforeStarting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-created")
	cases := [][]string{
		{"--data-dir", dir, "--max-batch-tasks", "-1"},
		{"--data-dir", dir, "--grpc-addr", "nope"},
		{"--data-dir", dir, "--no-such-flag"},
		{"--data-dir", dir, "extra-argument"},
	}
	for _, args := range cases {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), args, noEnv, &out, &errOut)
		msg := errOut.String()
		if code != 1 || !strings.HasPrefix(msg, "gridd: ") || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 1 and one line", args, code, msg)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%v: the data dir was created before the settings were checked", args)
		}
	}
}

// TestCorruptDataDirRefusesToStart: a node whose raft.db is damaged must
// not serve; the one line it prints names the file.
func TestCorruptDataDirRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	junk := bytes.Repeat([]byte("not a bbolt file "), 1024)
	if err := os.WriteFile(filepath.Join(dir, "raft.db"), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	args := []string{"--id", "n1", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0",
		"--raft-addr", "127.0.0.1:0", "--metrics-addr", "", "--log-level", "error"}
	code := execute(context.Background(), args, noEnv, &out, &errOut)
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "gridd: ") || !strings.Contains(last, filepath.Join(dir, "raft.db")) {
		t.Fatalf("exit %d, last line %q: want 1 and an error naming raft.db", code, last)
	}
}

// TestRunsAndStopsGracefully starts a real single-node gridd from
// environment and file settings, checks that it leads and serves the
// Cluster API, then cancels it as SIGINT would.
func TestRunsAndStopsGracefully(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	conf := filepath.Join(dir, "gridd.yaml")
	yamlText := "id: n1\ndata-dir: " + filepath.Join(dir, "data") + "\nraft-addr: 127.0.0.1:0\nmetrics-addr: 127.0.0.1:0\n"
	if err := os.WriteFile(conf, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GRIDD_CONFIG": conf, "GRIDD_LOG_FORMAT": "json", "GRIDD_LOG_LEVEL": "debug", "GRIDD_HEARTBEAT_TIMEOUT": "200ms",
		"GRIDD_ELECTION_TIMEOUT": "200ms", "GRIDD_LEADER_LEASE_TIMEOUT": "100ms"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- execute(ctx, []string{"--grpc-addr", "127.0.0.1:0"}, lookup, &out, &errOut)
	}()

	var addr string
	waitFor(t, "the node-started log line", func() bool {
		addr = startedAddr(errOut.String())
		return addr != ""
	})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	waitFor(t, "the node to lead", func() bool {
		st, err := griddpb.NewClusterClient(cc).Status(ctx, &griddpb.ClusterStatusRequest{})
		return err == nil && st.GetState() == "leader" && st.GetNodeId() == "n1"
	})

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("graceful stop exited %d: %s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gridd did not stop after its context was cancelled")
	}
	if !strings.Contains(errOut.String(), `"msg":"stopped"`) {
		t.Fatalf("no stopped log line:\n%s", errOut.String())
	}
	cc.Close()
	waitFor(t, "the node's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// startedAddr finds the gRPC address in gridd's JSON "node started" line.
func startedAddr(logs string) string {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var rec struct {
			Msg       string `json:"msg"`
			Component string `json:"component"`
			GRPCAddr  string `json:"grpc_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Component == "gridd" && rec.Msg == "node started" {
			return rec.GRPCAddr
		}
	}
	return ""
}
