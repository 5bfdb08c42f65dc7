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

// TestAgainstCluster runs gridctl's commands against a real 3-node cluster
// in this process and checks their table and JSON output.
func TestAgainstCluster(t *testing.T) {
	noLeaks(t) // registered first, so it checks after the cluster is gone
	c := testcluster.Start(t, 3, testcluster.Options{})
	addrs := c.Addrs()
	all := strings.Join(addrs, ",")
	follower := addrs[(c.WaitLeader()+1)%3]

	t.Run("cluster status", func(t *testing.T) {
		out := ok(t, "--addr", all, "cluster", "status")
		for _, s := range []string{"leader", "term", "log index", "RAFT ADDRESS", "n1", "n2", "n3", "voter"} {
			if !strings.Contains(out, s) {
				t.Errorf("status table lacks %q", s)
			}
		}
		st := parse(t, ok(t, "--addr", follower, "-o", "json", "cluster", "status"), &griddpb.ClusterStatus{})
		leaders := 0
		for _, m := range st.Members {
			if m.Leader {
				leaders++
			}
		}
		if st.State != "follower" || len(st.Members) != 3 || leaders != 1 || st.LeaderId == "" || st.CommitIndex == 0 {
			t.Fatalf("follower's status is wrong: %v", st)
		}
	})

	t.Run("a dead address is skipped", func(t *testing.T) {
		st := parse(t, ok(t, "--addr", closedAddr(t)+","+follower, "-o", "json", "cluster", "members"), &griddpb.ClusterStatus{})
		if len(st.Members) != 3 || st.NodeId != "" {
			t.Fatalf("members document should hold only the 3 members: %v", st)
		}
	})

	sid := createSession(t, follower)

	t.Run("session list, update, show through a follower", func(t *testing.T) {
		out := ok(t, "--addr", follower, "session", "list")
		if !strings.Contains(out, sid) || !strings.Contains(out, "open") {
			t.Fatalf("list lacks the session:\n%s", out)
		}
		out = ok(t, "--addr", follower, "session", "update", sid, "--priority", "8", "--max-workers", "3", "--tags", "risk,eod")
		if !strings.Contains(out, "priority  ") || !strings.Contains(out, "risk, eod") {
			t.Fatalf("update did not print the session:\n%s", out)
		}
		s := parse(t, ok(t, "--addr", all, "-o", "json", "session", "show", sid), &griddpb.Session{})
		a := s.GetAttributes()
		if a.GetPriority() != 8 || a.GetMaxWorkers() != 3 || a.GetMinWorkers() != 1 || len(a.GetTags()) != 2 {
			t.Fatalf("update changed the wrong attributes: %v", a)
		}
	})

	t.Run("errors are one actionable line", func(t *testing.T) {
		code, _, errOut := run(t, nil, "--addr", all, "session", "show", "no-such-session")
		if code != 1 || !strings.HasPrefix(errOut, "gridctl: not found: ") || !strings.Contains(errOut, "no-such-session") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		code, _, errOut = run(t, nil, "--addr", all, "session", "update", sid, "--priority", "11")
		if code != 1 || !strings.HasPrefix(errOut, "gridctl: invalid argument: ") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("session close", func(t *testing.T) {
		s := parse(t, ok(t, "--addr", follower, "-o", "json", "session", "close", sid), &griddpb.Session{})
		if s.GetState() != griddpb.SessionState_SESSION_STATE_CLOSED {
			t.Fatalf("closed session reads %v", s.GetState())
		}
		open := parse(t, ok(t, "--addr", all, "-o", "json", "session", "list"), &griddpb.ListSessionsResponse{})
		closed := parse(t, ok(t, "--addr", all, "-o", "json", "session", "list", "--all"), &griddpb.ListSessionsResponse{})
		if len(open.GetSessions()) != 0 || len(closed.GetSessions()) != 1 {
			t.Fatalf("list: %d open, %d with --all; want 0 and 1", len(open.GetSessions()), len(closed.GetSessions()))
		}
		ok(t, "--addr", all, "session", "close", sid) // twice is harmless
	})

	t.Run("transfer-leader", func(t *testing.T) {
		before := leaderOf(t, all)
		resp := parse(t, ok(t, "--addr", follower, "-o", "json", "cluster", "transfer-leader"), &griddpb.TransferLeadershipResponse{})
		if resp.GetLeaderId() == "" || resp.GetLeaderId() == before {
			t.Fatalf("leadership went from %s to %q", before, resp.GetLeaderId())
		}
		waitFor(t, "every node to see the new leader", func() bool {
			for _, a := range addrs {
				if leaderOf(t, a) != resp.GetLeaderId() {
					return false
				}
			}
			return true
		})
	})

	t.Run("remove and join", func(t *testing.T) {
		leader := leaderOf(t, all)
		var victim *griddpb.Member
		st := parse(t, ok(t, "--addr", all, "-o", "json", "cluster", "status"), &griddpb.ClusterStatus{})
		for _, m := range st.GetMembers() {
			if m.GetId() != leader {
				victim = m
			}
		}
		if out := ok(t, "--addr", all, "cluster", "remove", victim.GetId()); out != victim.GetId()+" removed\n" {
			t.Fatalf("remove printed %q", out)
		}
		waitFor(t, "2 members", func() bool {
			out := ok(t, "--addr", all, "-o", "json", "cluster", "members")
			return len(parse(t, out, &griddpb.ClusterStatus{}).GetMembers()) == 2
		})
		// Joining a member again with its own addresses changes nothing.
		var kept *griddpb.Member
		for _, m := range st.GetMembers() {
			if m.GetId() == leader {
				kept = m
			}
		}
		out := ok(t, "--addr", all, "cluster", "join", kept.GetId(), kept.GetRaftAddr(), kept.GetGrpcAddr())
		if !strings.HasPrefix(out, kept.GetId()+" is a member") || strings.Contains(out, victim.GetId()+" ") {
			t.Fatalf("join printed:\n%s", out)
		}
	})
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
