package nemesis

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake records the commands instead of running them and answers docker
// inspect like a running, unpaused container.
type fake struct {
	mu   sync.Mutex
	cmds []string
	logs string // what docker logs prints
}

func (f *fake) run(_ context.Context, name string, args ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := name + " " + strings.Join(args, " ")
	if len(args) > 0 && args[0] == "inspect" {
		switch args[2] {
		case "{{.State.Pid}}":
			return "4242\n", nil
		case "{{.State.Running}}":
			return "true\n", nil
		case "{{.State.Paused}}":
			return "false\n", nil
		case `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}`:
			return "/vol/" + args[3] + "\n", nil
		default: // the address
			return "10.0.0." + args[3][len(args[3])-1:] + " \n", nil
		}
	}
	f.cmds = append(f.cmds, cmd)
	if len(args) > 0 && args[0] == "logs" {
		return f.logs, nil
	}
	return "", nil
}

func newDocker(f *fake) *Docker {
	return &Docker{Run: f.run,
		Containers: map[string]string{"n1": "gridd-n1", "n2": "gridd-n2", "n3": "gridd-n3"},
		Order:      []string{"n1", "n2", "n3"},
		Leader:     func(context.Context) (string, error) { return "n2", nil },
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func TestInjectAndHeal(t *testing.T) {
	cases := []struct {
		st         Step
		inject     []string
		heal       []string
		faultNodes []string
	}{
		{Step{Kind: KillLeader}, []string{"docker kill -s KILL gridd-n2"}, []string{"docker start gridd-n2"}, []string{"n2"}},
		{Step{Kind: KillRandom, Pick: 5}, []string{"docker kill -s KILL gridd-n3"}, []string{"docker start gridd-n3"}, []string{"n3"}},
		{Step{Kind: KillAll}, []string{"docker kill -s KILL gridd-n1 gridd-n2 gridd-n3"},
			[]string{"docker start gridd-n1 gridd-n2 gridd-n3"}, []string{"n1", "n2", "n3"}},
		{Step{Kind: PauseLeader}, []string{"docker pause gridd-n2"}, []string{"docker unpause gridd-n2"}, []string{"n2"}},
		{Step{Kind: PartitionLeader}, []string{
			"nsenter -t 4242 -n iptables -w -I INPUT -s 10.0.0.1 -j DROP",
			"nsenter -t 4242 -n iptables -w -I OUTPUT -d 10.0.0.1 -j DROP",
			"nsenter -t 4242 -n iptables -w -I INPUT -s 10.0.0.3 -j DROP",
			"nsenter -t 4242 -n iptables -w -I OUTPUT -d 10.0.0.3 -j DROP",
		}, []string{
			"nsenter -t 4242 -n iptables -w -D INPUT -s 10.0.0.1 -j DROP",
			"nsenter -t 4242 -n iptables -w -D OUTPUT -d 10.0.0.1 -j DROP",
			"nsenter -t 4242 -n iptables -w -D INPUT -s 10.0.0.3 -j DROP",
			"nsenter -t 4242 -n iptables -w -D OUTPUT -d 10.0.0.3 -j DROP",
		}, []string{"n2"}},
		{Step{Kind: OneWayLeader}, []string{
			"nsenter -t 4242 -n iptables -w -I INPUT -s 10.0.0.1 -j DROP",
			"nsenter -t 4242 -n iptables -w -I INPUT -s 10.0.0.3 -j DROP",
		}, []string{
			"nsenter -t 4242 -n iptables -w -D INPUT -s 10.0.0.1 -j DROP",
			"nsenter -t 4242 -n iptables -w -D INPUT -s 10.0.0.3 -j DROP",
		}, []string{"n2"}},
	}
	for _, c := range cases {
		t.Run(string(c.st.Kind), func(t *testing.T) {
			f := &fake{}
			d := newDocker(f)
			flt, err := d.Inject(context.Background(), c.st)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.cmds, c.inject) || !reflect.DeepEqual(flt.Nodes, c.faultNodes) {
				t.Fatalf("inject ran %q on %v, want %q on %v", f.cmds, flt.Nodes, c.inject, c.faultNodes)
			}
			f.cmds = nil
			if err := flt.Heal(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.cmds, c.heal) {
				t.Fatalf("heal ran %q, want %q", f.cmds, c.heal)
			}
		})
	}
}

func TestScheduleReplaysFromSeed(t *testing.T) {
	a, b := NewSchedule(7, AllKinds), NewSchedule(7, AllKinds)
	count := map[Kind]int{}
	for i := 0; i < 2*len(AllKinds); i++ {
		sa, sb := a.Next(), b.Next()
		if sa != sb {
			t.Fatalf("step %d differs for one seed: %+v vs %+v", i, sa, sb)
		}
		if sa.Hold < a.HoldMin || sa.Hold >= a.HoldMax || sa.Quiet < a.QuietMin || sa.Quiet >= a.QuietMax {
			t.Fatalf("step %d out of bounds: %+v", i, sa)
		}
		count[sa.Kind]++
	}
	for _, k := range AllKinds {
		if count[k] != 2 {
			t.Fatalf("two rounds injected %s %d times, want 2: %v", k, count[k], count)
		}
	}
	c, d := NewSchedule(8, AllKinds), NewSchedule(7, AllKinds)
	same := true
	for i := 0; i < 6; i++ {
		same = same && d.Next() == c.Next()
	}
	if same {
		t.Fatal("seeds 7 and 8 gave the same schedule")
	}
}

// fakeMembers is a three-node configuration behind the Membership seam:
// it records every call and fails the first joinFails joins (all of them
// when joinFails < 0).
type fakeMembers struct {
	mu        sync.Mutex
	leader    string
	members   map[string]Member
	calls     []string
	joinFails int
}

func newFakeMembers(leader string) *fakeMembers {
	f := &fakeMembers{leader: leader, members: map[string]Member{}}
	for _, id := range []string{"n1", "n2", "n3"} {
		f.members[id] = Member{ID: id, RaftAddr: id + ":7337", GRPCAddr: id + ":1337", Leader: id == leader}
	}
	return f
}

func (f *fakeMembers) Members(_ context.Context, via string) ([]Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "status via "+via)
	var out []Member
	for _, id := range []string{"n1", "n2", "n3"} {
		if m, ok := f.members[id]; ok {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *fakeMembers) Remove(_ context.Context, via, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "remove "+id+" via "+via)
	delete(f.members, id)
	return nil
}

func (f *fakeMembers) Join(_ context.Context, via string, m Member) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "join "+m.ID+" "+m.RaftAddr+" "+m.GRPCAddr+" via "+via)
	if f.joinFails != 0 {
		f.joinFails--
		return errors.New("not the leader")
	}
	f.members[m.ID] = m
	return nil
}

func (f *fakeMembers) snapshot() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), len(f.members)
}

func TestRemoveNodeAndJoinBack(t *testing.T) {
	for _, c := range []struct {
		pick   int
		victim string
	}{{0, "n1"}, {1, "n3"}, {4, "n1"}} {
		f, m := &fake{}, newFakeMembers("n2")
		d := newDocker(f)
		d.Membership = m
		flt, err := d.Inject(context.Background(), Step{Kind: RemoveNode, Pick: c.pick})
		if err != nil {
			t.Fatal(err)
		}
		calls, n := m.snapshot()
		want := []string{"status via n2", "remove " + c.victim + " via n2"}
		if !reflect.DeepEqual(calls, want) || n != 2 || !reflect.DeepEqual(flt.Nodes, []string{c.victim}) {
			t.Fatalf("pick %d: inject made %q (%d members left) on %v, want %q on %s", c.pick, calls, n, flt.Nodes, want, c.victim)
		}
		if len(f.cmds) != 0 {
			t.Fatalf("remove-node ran host commands %q: the victim must keep running", f.cmds)
		}
		if got := d.Removed(); len(got) != 1 || got[0].ID != c.victim {
			t.Fatalf("Removed() = %v during the fault", got)
		}
		if err := flt.Heal(context.Background()); err != nil {
			t.Fatal(err)
		}
		calls, n = m.snapshot()
		join := "join " + c.victim + " " + c.victim + ":7337 " + c.victim + ":1337 via "
		if last := calls[len(calls)-1]; n != 3 || !strings.HasPrefix(last, join) || strings.HasSuffix(last, c.victim) {
			t.Fatalf("heal made %q, %d members; want %q through another node", calls[2:], n, join)
		}
		if got := d.Removed(); len(got) != 0 {
			t.Fatalf("Removed() = %v after the heal", got)
		}
	}
}

func TestRemoveNodeHealRetries(t *testing.T) {
	m := newFakeMembers("n1")
	m.joinFails = 3
	d := newDocker(&fake{})
	d.Leader = func(context.Context) (string, error) { return "n1", nil }
	d.Membership = m
	flt, err := d.Inject(context.Background(), Step{Kind: RemoveNode, Pick: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := flt.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls, n := m.snapshot()
	want := []string{"status via n1", "remove n2 via n1",
		"join n2 n2:7337 n2:1337 via n1", "join n2 n2:7337 n2:1337 via n3",
		"join n2 n2:7337 n2:1337 via n1", "join n2 n2:7337 n2:1337 via n3"}
	if !reflect.DeepEqual(calls, want) || n != 3 {
		t.Fatalf("calls %q (%d members), want %q", calls, n, want)
	}
}

// A heal that can never succeed returns an error when its context ends
// (it does not hang), and leaves the node listed by Removed, which HealAll
// retries and the run reports as a failure.
func TestRemoveNodeHealGivesUp(t *testing.T) {
	m := newFakeMembers("n2")
	m.joinFails = -1
	d := newDocker(&fake{})
	d.Membership = m
	flt, err := d.Inject(context.Background(), Step{Kind: RemoveNode, Pick: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := flt.Heal(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("heal = %v, want a deadline error", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("heal took %s after its context ended", time.Since(start))
	}
	if got := d.Removed(); len(got) != 1 || got[0].ID != "n3" {
		t.Fatalf("Removed() = %v, want n3", got)
	}
	// A second remove-node is refused while one is still out.
	if flt, err := d.Inject(context.Background(), Step{Kind: RemoveNode}); flt != nil || err == nil {
		t.Fatalf("second remove-node injected while n3 is out: %v, %v", flt, err)
	}
	// HealAll joins it back once the cluster accepts the join.
	m.mu.Lock()
	m.joinFails = 0
	m.mu.Unlock()
	if err := d.HealAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, n := m.snapshot(); n != 3 || len(d.Removed()) != 0 {
		t.Fatalf("after HealAll: %d members, removed %v", n, d.Removed())
	}
}

func TestRemoveNodeWithoutMembership(t *testing.T) {
	d := newDocker(&fake{})
	if flt, err := d.Inject(context.Background(), Step{Kind: RemoveNode}); flt != nil || err == nil {
		t.Fatalf("remove-node without the Cluster API: %v, %v", flt, err)
	}
}

// Every kind must fit: one round in a --short run (2m), two in the default
// 5m, even with every quiet and hold at its maximum and some seconds per
// step for injecting and healing.
func TestScheduleFitsRuns(t *testing.T) {
	s := NewSchedule(1, AllKinds)
	step := s.QuietMax + s.HoldMax + 2*time.Second
	if one := time.Duration(len(AllKinds)) * step; one > 2*time.Minute {
		t.Fatalf("one round of %d kinds takes up to %s: a --short run may miss one", len(AllKinds), one)
	}
	if two := 2 * time.Duration(len(AllKinds)) * step; two > 5*time.Minute {
		t.Fatalf("two rounds take up to %s: a 5-minute run may inject a kind once", two)
	}
}

func TestParseKinds(t *testing.T) {
	if k, err := ParseKinds("kill-leader,remove-node"); err != nil || len(k) != 2 || k[1] != RemoveNode {
		t.Fatalf("ParseKinds = %v, %v", k, err)
	}
	if _, err := ParseKinds("kill-leader,nope"); err == nil {
		t.Fatal("unknown fault accepted")
	}
}

// fakeWorkers records kills and starts.
type fakeWorkers struct {
	mu     sync.Mutex
	busy   []int
	events []string
}

func (w *fakeWorkers) Len() int          { return len(w.busy) }
func (w *fakeWorkers) Name(i int) string { return "w" + string(rune('0'+i)) }
func (w *fakeWorkers) Busy(i int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.busy[i]
}
func (w *fakeWorkers) Kill(_ context.Context, i int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, "kill "+w.Name(i))
	w.busy[i] = 0
	return nil
}
func (w *fakeWorkers) Start(i int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, "start "+w.Name(i))
	return nil
}

func TestKillWorkerPicksABusyOne(t *testing.T) {
	d := newDocker(&fake{})
	if flt, err := d.Inject(context.Background(), Step{Kind: KillWorker}); flt != nil || err == nil {
		t.Fatalf("kill-worker without workers: %v, %v", flt, err)
	}
	w := &fakeWorkers{busy: []int{0, 0, 3}}
	d.Workers = w
	// The seed picks w1, which is idle: the next busy one dies instead.
	flt, err := d.Inject(context.Background(), Step{Kind: KillWorker, Pick: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(flt.Nodes, []string{"w2"}) {
		t.Fatalf("killed %v, want the busy w2", flt.Nodes)
	}
	if err := flt.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"kill w2", "start w2"}; !reflect.DeepEqual(w.events, want) {
		t.Fatalf("events %q, want %q", w.events, want)
	}
}

func TestCorruptFollower(t *testing.T) {
	f := &fake{logs: "gridd: cluster: /data/raft.db is corrupt: invalid meta page\n"}
	d := newDocker(f)
	if flt, err := d.Inject(context.Background(), Step{Kind: CorruptFollower}); flt != nil || err == nil {
		t.Fatalf("corrupt-follower without wipeable nodes: %v, %v", flt, err)
	}
	// n2 leads and n1 bootstraps when empty: n3 is the only candidate.
	d.Wipeable = []string{"n2", "n3"}
	flt, err := d.Inject(context.Background(), Step{Kind: CorruptFollower, Pick: 0})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"docker stop -t 10 gridd-n3",
		"dd if=/dev/urandom of=/vol/gridd-n3/raft.db bs=4096 count=2 conv=notrunc",
		"docker start gridd-n3", "docker logs --tail 20 gridd-n3"}
	if !reflect.DeepEqual(flt.Nodes, []string{"n3"}) || !reflect.DeepEqual(f.cmds, want) {
		t.Fatalf("inject ran %q on %v, want %q on n3", f.cmds, flt.Nodes, want)
	}
	if flt, err := d.Inject(context.Background(), Step{Kind: CorruptFollower}); flt != nil || err == nil {
		t.Fatalf("a second corrupt-follower before the wipe: %v, %v", flt, err)
	}
	f.cmds = nil
	if err := flt.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = []string{"docker stop -t 10 gridd-n3", "find /vol/gridd-n3 -mindepth 1 -delete", "docker start gridd-n3"}
	if !reflect.DeepEqual(f.cmds, want) {
		t.Fatalf("heal ran %q, want %q", f.cmds, want)
	}
	if p := d.Problems(); len(p) != 0 {
		t.Fatalf("problems %v after a proper refusal", p)
	}
}

// A node that starts from a damaged raft.db is a problem that fails the
// run.
func TestCorruptFollowerThatStartsIsAProblem(t *testing.T) {
	f := &fake{logs: "gridd node started\n"}
	d := newDocker(f)
	d.Wipeable = []string{"n3"}
	d.RefuseWait = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	flt, err := d.Inject(ctx, Step{Kind: CorruptFollower})
	if flt == nil || err == nil || len(d.Problems()) != 1 {
		t.Fatalf("inject = %v, %v; problems %v", flt, err, d.Problems())
	}
	if err := d.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	if left := d.damagedNodes(); len(left) != 0 {
		t.Fatalf("HealAll left %v damaged", left)
	}
}

// The run ending while the nemesis waits for the refusal is not a problem:
// the wait was cut short, nothing was shown to be wrong.
func TestCorruptFollowerCutShortIsNoProblem(t *testing.T) {
	f := &fake{logs: "gridd node started\n"}
	d := newDocker(f)
	d.Wipeable = []string{"n3"}
	d.RefuseWait = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	flt, err := d.Inject(ctx, Step{Kind: CorruptFollower})
	if flt == nil || err == nil || !strings.Contains(err.Error(), "run ended") {
		t.Fatalf("inject = %v, %v; want the fault and a cut-short error", flt, err)
	}
	if p := d.Problems(); len(p) != 0 {
		t.Fatalf("problems %v after a wait the run cut short", p)
	}
	if err := d.HealAll(context.Background()); err != nil {
		t.Fatal(err)
	}
}
