package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// run executes gridctl with args and env and returns the exit code and
// what it wrote.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := execute(context.Background(), args, lookup, &out, &errOut)
	t.Logf("gridctl %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// noLeaks fails the test unless the goroutines started during it end.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines left running, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestUnreachable(t *testing.T) {
	noLeaks(t)
	a, b := closedAddr(t), closedAddr(t)
	code, out, errOut := run(t, nil, "--addr", a+","+b, "cluster", "status")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	want := "gridctl: cannot reach any of " + a + ", " + b + ": is gridd running? (connection refused)\n"
	if errOut != want {
		t.Fatalf("stderr\n got %q\nwant %q", errOut, want)
	}
}

func TestGlobals(t *testing.T) {
	dead := closedAddr(t)
	cases := []struct {
		name string
		env  map[string]string
		args []string
		says string
	}{
		{"env address", map[string]string{"GRIDCTL_ADDR": dead}, []string{"session", "list"}, "cannot reach any of " + dead + ":"},
		{"flag beats env", map[string]string{"GRIDCTL_ADDR": "127.0.0.1:1"}, []string{"--addr", dead, "session", "list"}, "cannot reach any of " + dead + ":"},
		{"bad output", nil, []string{"-o", "yaml", "cluster", "status"}, `--output "yaml": want table or json`},
		{"bad address", nil, []string{"--addr", "nowhere", "cluster", "status"}, `--addr "nowhere": want host:port`},
		{"empty address", map[string]string{"GRIDCTL_ADDR": " , "}, []string{"cluster", "status"}, "give --addr"},
		{"bad timeout", nil, []string{"--timeout", "0s", "cluster", "status"}, "positive duration"},
		{"unknown flag", nil, []string{"session", "list", "--al"}, "see gridctl session list --help"},
		{"missing argument", nil, []string{"session", "show"}, "accepts 1 arg"},
		{"unknown command", nil, []string{"session", "lsit"}, `unknown command "lsit"`},
		{"empty update", nil, []string{"--addr", dead, "session", "update", "s1"}, "nothing to update"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, tc.env, tc.args...)
			if code != 1 || !strings.Contains(errOut, tc.says) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want 1 and one line saying %q", code, errOut, tc.says)
			}
		})
	}
}

func TestHelpHidesAPIKey(t *testing.T) {
	env := map[string]string{"GRIDCTL_API_KEY": "s3cret"}
	code, out, _ := run(t, env, "--help")
	if code != 0 || strings.Contains(out, "s3cret") || !strings.Contains(out, "GRIDCTL_API_KEY") {
		t.Fatalf("exit %d; help must name GRIDCTL_API_KEY but not its value:\n%s", code, out)
	}
}

// updateOf parses args as session update flags and returns what would be
// sent.
func updateOf(t *testing.T, args ...string) (*griddpb.SessionUpdate, error) {
	t.Helper()
	fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
	var f updateFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.update(fs)
}

func TestUpdateSendsOnlyGivenFlags(t *testing.T) {
	u, err := updateOf(t, "--priority", "0", "--max-workers", "16", "--idle-timeout", "90s", "--preemptible=false", "--tags", "")
	if err != nil {
		t.Fatal(err)
	}
	want := &griddpb.SessionUpdate{
		Priority: proto.Int32(0), MaxWorkers: proto.Int32(16), IdleTimeoutMs: proto.Int64(90_000),
		Preemptible: proto.Bool(false), ReplaceTags: true, Tags: []string{},
	}
	if !proto.Equal(u, want) {
		t.Fatalf("update\n got %v\nwant %v", u, want)
	}
	u, err = updateOf(t, "--min-workers", "2")
	if err != nil || u.MinWorkers == nil || u.Priority != nil || u.ReplaceTags {
		t.Fatalf("only min_workers should be set: %v, %v", u, err)
	}
	if _, err := updateOf(t); err == nil {
		t.Fatal("an update without flags was accepted")
	}
	u, err = updateOf(t, "--retry-backoff", "1.5s", "--retry-backoff-max", "1m")
	if err != nil || u.GetRetryBackoffMs() != 1500 || u.GetRetryBackoffMaxMs() != 60_000 || u.MaxAttempts != nil {
		t.Fatalf("retry backoff flags: %v, %v", u, err)
	}
	fs := pflag.NewFlagSet("submit", pflag.ContinueOnError)
	var f updateFlags
	f.register(fs)
	if err := fs.Parse([]string{"--retry-backoff", "250ms"}); err != nil {
		t.Fatal(err)
	}
	if a := f.attributes(); a.GetRetryBackoffMs() != 250 || a.GetRetryBackoffMaxMs() != 0 {
		t.Fatalf("submit's session attributes: %v", a)
	}
	if names := createFlagNames(fs); len(names) != 1 || names[0] != "--retry-backoff" {
		t.Fatalf("submit does not see --retry-backoff as a session attribute: %v", names)
	}
}

func TestErrorWords(t *testing.T) {
	g := &globals{timeout: 3 * time.Second}
	cases := []struct {
		code codes.Code
		says string
	}{
		{codes.NotFound, "not found: session s1 not found"},
		{codes.Unauthenticated, "pass --api-key"},
		{codes.PermissionDenied, "check --api-key"},
		{codes.FailedPrecondition, "failed precondition: session s1 not found"},
		{codes.DeadlineExceeded, "--timeout 3s"},
		{codes.InvalidArgument, "invalid argument: session s1 not found"},
	}
	for _, tc := range cases {
		e := &rpcError{st: status.New(tc.code, "session s1 not found"), hint: hintFor(tc.code, g)}
		if !strings.Contains(e.Error(), tc.says) {
			t.Errorf("%v: %q does not say %q", tc.code, e.Error(), tc.says)
		}
		var err error = e
		if status.Code(err) != tc.code {
			t.Errorf("status.Code lost the code %v", tc.code)
		}
		var re *rpcError
		if !errors.As(err, &re) {
			t.Error("errors.As failed")
		}
	}
}

func sampleStatus() *griddpb.ClusterStatus {
	return &griddpb.ClusterStatus{
		NodeId: "n2", State: "follower", LeaderId: "n1", LeaderGrpcAddr: "127.0.0.1:21337",
		Term: 4, LastLogIndex: 120, CommitIndex: 119, AppliedIndex: 118, LastSnapshotIndex: 64,
		GrpcAddr: "127.0.0.1:21338", RaftAddr: "127.0.0.1:27338",
		Members: []*griddpb.Member{
			{Id: "n1", RaftAddr: "127.0.0.1:27337", GrpcAddr: "127.0.0.1:21337", Suffrage: "voter", Leader: true},
			{Id: "n2", RaftAddr: "127.0.0.1:27338", GrpcAddr: "127.0.0.1:21338", Suffrage: "voter"},
		},
	}
}

func TestStatusTable(t *testing.T) {
	var b bytes.Buffer
	if err := statusTable(&b, sampleStatus()); err != nil {
		t.Fatal(err)
	}
	want := `node       n2 (follower)
addresses  gRPC 127.0.0.1:21338, Raft 127.0.0.1:27338
leader     n1 at 127.0.0.1:21337
term       4
log index  last 120, commit 119, applied 118, snapshot 64

ID  RAFT ADDRESS     GRPC ADDRESS     SUFFRAGE  LEADER
n1  127.0.0.1:27337  127.0.0.1:21337  voter     yes
n2  127.0.0.1:27338  127.0.0.1:21338  voter
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	_ = statusTable(&b, &griddpb.ClusterStatus{NodeId: "n3", State: "candidate"})
	if !strings.Contains(b.String(), "no leader is known") {
		t.Fatalf("a status without a leader must say so:\n%s", b.String())
	}
}

func sampleSession() *griddpb.Session {
	return &griddpb.Session{
		Id: "01J9ZQ3V6X6M6P3N4V6ZB0D2QK", App: "montecarlo", State: griddpb.SessionState_SESSION_STATE_OPEN,
		CreatedUnixMs: 1_700_000_000_000, UpdatedUnixMs: 1_700_000_060_000,
		Attributes: &griddpb.SessionAttributes{Priority: 7, MinWorkers: 1, IdleTimeoutMs: 60_000,
			MaxInflightBatchesPerWorker: 10, MaxAttempts: 3, Tags: []string{"risk", "eod"}},
		Counts: &griddpb.TaskCounts{Submitted: 1000, Pending: 200, Completed: 790, DeadLettered: 10, ResultsUnacked: 5},
	}
}

func TestSessionTables(t *testing.T) {
	var b bytes.Buffer
	closed := proto.Clone(sampleSession()).(*griddpb.Session)
	closed.Id, closed.State, closed.Attributes.MaxWorkers = "s2", griddpb.SessionState_SESSION_STATE_CLOSED, 4
	if err := sessionsTable(&b, []*griddpb.Session{sampleSession(), closed}); err != nil {
		t.Fatal(err)
	}
	want := `ID                          APP         STATE   PRIORITY  WORKERS       SUBMITTED  PENDING  COMPLETED  DEAD  CREATED
01J9ZQ3V6X6M6P3N4V6ZB0D2QK  montecarlo  open    7         1..unlimited  1000       200      790        10    2023-11-14T22:13:20Z
s2                          montecarlo  closed  7         1..4          1000       200      790        10    2023-11-14T22:13:20Z
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := sessionDetail(&b, sampleSession()); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"priority                           7", "tags                               risk, eod",
		"idle timeout                       1m0s", "task timeout                       none", "tasks dead-lettered                10",
		"updated                            2023-11-14T22:14:20Z"} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("detail lacks %q:\n%s", line, b.String())
		}
	}
}

// TestJSONIsOneProtojsonDocument: the output parses back into the message
// it came from, zero fields included.
func TestJSONIsOneProtojsonDocument(t *testing.T) {
	var b bytes.Buffer
	g := &globals{output: "json"}
	in := sampleSession()
	in.Counts.Running = 0
	if err := emit(&b, g, in, nil); err != nil {
		t.Fatal(err)
	}
	var back griddpb.Session
	if err := protojson.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("not protojson: %v\n%s", err, b.String())
	}
	if !proto.Equal(in, &back) {
		t.Fatalf("round trip changed the session:\n%v\n%v", in, &back)
	}
	if !strings.Contains(b.String(), `"running"`) {
		t.Fatalf("zero fields must be printed:\n%s", b.String())
	}
}

func TestMembersJSON(t *testing.T) {
	var b bytes.Buffer
	if err := emitMembers(&b, &globals{output: "json"}, sampleStatus().GetMembers()); err != nil {
		t.Fatal(err)
	}
	var doc map[string][]map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || len(doc) != 1 || len(doc["members"]) != 2 {
		t.Fatalf("want one document {\"members\": [2 members]}: %v\n%s", err, b.String())
	}
	if doc["members"][1]["leader"] != false || doc["members"][0]["raftAddr"] != "127.0.0.1:27337" {
		t.Fatalf("members lack fields, zeros included: %v", doc["members"])
	}
	b.Reset()
	_ = emitMembers(&b, &globals{output: "json"}, nil)
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || len(doc["members"]) != 0 {
		t.Fatalf("no members: %v\n%s", err, b.String())
	}
}
