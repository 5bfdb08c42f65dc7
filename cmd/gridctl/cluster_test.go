package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

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

// ok runs gridctl and fails the test unless it exits 0; it returns stdout.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, nil, args...)
	if code != 0 {
		t.Fatalf("gridctl %s exited %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// parse reads gridctl's JSON output into m, failing on anything else.
func parse[M proto.Message](t *testing.T, out string, m M) M {
	t.Helper()
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("output is not one protojson %T: %v\n%s", m, err, out)
	}
	return m
}

func leaderOf(t *testing.T, addr string) string {
	t.Helper()
	code, out, _ := run(t, nil, "--addr", addr, "-o", "json", "cluster", "status")
	if code != 0 {
		return ""
	}
	return parse(t, out, &griddpb.ClusterStatus{}).GetLeaderId()
}

// live is the cluster the subtests of TestAgainstCluster share.
type live struct {
	addrs    []string
	all      string // every address, comma-separated
	follower string // a follower's address, to exercise forwarding
	sid      string // a session created for the test
}

// TestAgainstCluster runs gridctl's commands against a real 3-node cluster
// in this process and checks their table and JSON output. The subtests run
// in order and share the cluster: each starts from the state the previous
// one left.
func TestAgainstCluster(t *testing.T) {
	noLeaks(t) // registered first, so it checks after the cluster is gone
	c := testcluster.Start(t, 3, testcluster.Options{})
	l := &live{addrs: c.Addrs(), all: strings.Join(c.Addrs(), ",")}
	l.follower = l.addrs[(c.WaitLeader()+1)%3]
	l.sid = createSession(t, l.follower)
	steps := []struct {
		name string
		run  func(*testing.T, *live)
	}{
		{"cluster status", testStatus},
		{"a dead address is skipped", testDeadAddress},
		{"session list, update, show through a follower", testSessionUpdate},
		{"errors are one actionable line", testErrors},
		{"session close", testSessionClose},
		{"transfer-leader", testTransfer},
		{"remove and join", testRemoveJoin},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.run(t, l) }) {
			return
		}
	}
}

func testStatus(t *testing.T, l *live) {
	out := ok(t, "--addr", l.all, "cluster", "status")
	for _, s := range []string{"leader", "term", "log index", "RAFT ADDRESS", "n1", "n2", "n3", "voter"} {
		if !strings.Contains(out, s) {
			t.Errorf("status table lacks %q", s)
		}
	}
	st := parse(t, ok(t, "--addr", l.follower, "-o", "json", "cluster", "status"), &griddpb.ClusterStatus{})
	leaders := 0
	for _, m := range st.Members {
		if m.Leader {
			leaders++
		}
	}
	if st.State != "follower" || len(st.Members) != 3 || leaders != 1 || st.LeaderId == "" || st.CommitIndex == 0 {
		t.Fatalf("follower's status is wrong: %v", st)
	}
}

func testDeadAddress(t *testing.T, l *live) {
	out := ok(t, "--addr", closedAddr(t)+","+l.follower, "-o", "json", "cluster", "members")
	if st := parse(t, out, &griddpb.ClusterStatus{}); len(st.Members) != 3 {
		t.Fatalf("want the 3 members: %v", st)
	}
}

func testSessionUpdate(t *testing.T, l *live) {
	out := ok(t, "--addr", l.follower, "session", "list")
	if !strings.Contains(out, l.sid) || !strings.Contains(out, "open") {
		t.Fatalf("list lacks the session:\n%s", out)
	}
	out = ok(t, "--addr", l.follower, "session", "update", l.sid, "--priority", "8", "--max-workers", "3", "--tags", "risk,eod")
	if !strings.Contains(out, "priority  ") || !strings.Contains(out, "risk, eod") {
		t.Fatalf("update did not print the session:\n%s", out)
	}
	s := parse(t, ok(t, "--addr", l.all, "-o", "json", "session", "show", l.sid), &griddpb.Session{})
	a := s.GetAttributes()
	if a.GetPriority() != 8 || a.GetMaxWorkers() != 3 || a.GetMinWorkers() != 1 || len(a.GetTags()) != 2 {
		t.Fatalf("update changed the wrong attributes: %v", a)
	}
}

func testErrors(t *testing.T, l *live) {
	code, _, errOut := run(t, nil, "--addr", l.all, "session", "show", "no-such-session")
	if code != 1 || !strings.HasPrefix(errOut, "gridctl: not found: ") || !strings.Contains(errOut, "no-such-session") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, nil, "--addr", l.all, "session", "update", l.sid, "--priority", "11")
	if code != 1 || !strings.HasPrefix(errOut, "gridctl: invalid argument: ") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func testSessionClose(t *testing.T, l *live) {
	s := parse(t, ok(t, "--addr", l.follower, "-o", "json", "session", "close", l.sid), &griddpb.Session{})
	if s.GetState() != griddpb.SessionState_SESSION_STATE_CLOSED {
		t.Fatalf("closed session reads %v", s.GetState())
	}
	open := parse(t, ok(t, "--addr", l.all, "-o", "json", "session", "list"), &griddpb.ListSessionsResponse{})
	closed := parse(t, ok(t, "--addr", l.all, "-o", "json", "session", "list", "--all"), &griddpb.ListSessionsResponse{})
	if len(open.GetSessions()) != 0 || len(closed.GetSessions()) != 1 {
		t.Fatalf("list: %d open, %d with --all; want 0 and 1", len(open.GetSessions()), len(closed.GetSessions()))
	}
	ok(t, "--addr", l.all, "session", "close", l.sid) // twice is harmless
}

func testTransfer(t *testing.T, l *live) {
	before := leaderOf(t, l.all)
	resp := parse(t, ok(t, "--addr", l.follower, "-o", "json", "cluster", "transfer-leader"), &griddpb.TransferLeadershipResponse{})
	if resp.GetLeaderId() == "" || resp.GetLeaderId() == before {
		t.Fatalf("leadership went from %s to %q", before, resp.GetLeaderId())
	}
	waitFor(t, "every node to see the new leader", func() bool {
		for _, a := range l.addrs {
			if leaderOf(t, a) != resp.GetLeaderId() {
				return false
			}
		}
		return true
	})
}

func testRemoveJoin(t *testing.T, l *live) {
	leader := leaderOf(t, l.all)
	var victim, kept *griddpb.Member
	st := parse(t, ok(t, "--addr", l.all, "-o", "json", "cluster", "status"), &griddpb.ClusterStatus{})
	for _, m := range st.GetMembers() {
		if m.GetId() == leader {
			kept = m
		} else {
			victim = m
		}
	}
	if out := ok(t, "--addr", l.all, "cluster", "remove", victim.GetId()); out != victim.GetId()+" removed\n" {
		t.Fatalf("remove printed %q", out)
	}
	waitFor(t, "2 members", func() bool {
		out := ok(t, "--addr", l.all, "-o", "json", "cluster", "members")
		return len(parse(t, out, &griddpb.ClusterStatus{}).GetMembers()) == 2
	})
	// Joining a member again with its own addresses changes nothing.
	out := ok(t, "--addr", l.all, "cluster", "join", kept.GetId(), kept.GetRaftAddr(), kept.GetGrpcAddr())
	if !strings.HasPrefix(out, kept.GetId()+" is a member") || strings.Contains(out, victim.GetId()+" ") {
		t.Fatalf("join printed:\n%s", out)
	}
}

// createSession makes a session through the generated API directly, with
// one attribute (min_workers) the update must leave alone.
func createSession(t *testing.T, addr string) string {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := griddpb.NewQueueClient(cc).CreateSession(ctx, &griddpb.CreateSessionRequest{
		RequestId: requestID(), App: "gridctl-test", Attributes: &griddpb.SessionAttributes{MinWorkers: 1},
	})
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	return s.GetId()
}
