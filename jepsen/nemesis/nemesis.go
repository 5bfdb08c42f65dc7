// Package nemesis injects faults into the docker-compose gridd cluster:
// kill -9 of the leader or of a random node, pause of the leader, network
// partitions (iptables in the container's network namespace, entered with
// nsenter, since the images are FROM scratch and have no shell or tools),
// kill of every node at once, removal of a follower from the Raft
// configuration (through the Cluster API) until it is joined back, and
// kill -9 of a worker process in the middle of its tasks. Each fault is held for a few seconds and
// then healed, on a schedule drawn from a seed so a run can be replayed.
package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kind names a fault.
type Kind string

// The faults, each healed at the end of its hold.
const (
	KillLeader      Kind = "kill-leader"      // docker kill -s KILL, then docker start
	KillRandom      Kind = "kill-random"      // the same, on a node drawn at random
	PauseLeader     Kind = "pause-leader"     // docker pause past the election timeout, then unpause
	PartitionLeader Kind = "partition-leader" // the leader cut from both others
	PartitionRandom Kind = "partition-random" // a random node cut from the majority
	KillAll         Kind = "kill-all"         // every node killed, then all started
	RemoveNode      Kind = "remove-node"      // Cluster.Remove of a follower, then Cluster.Join back
	KillWorker      Kind = "kill-worker"      // SIGKILL of a worker process holding tasks, then a new one
	// A follower stopped and its raft.db damaged: it must refuse to start;
	// the heal wipes its data dir and it rejoins from a snapshot.
	CorruptFollower Kind = "corrupt-follower"
	// The leader stops hearing from the other nodes while they still hear
	// it (packets from them dropped on its side only): an asymmetric
	// partition. It must step down for want of acknowledgements, and its
	// election attempts must not depose the leader the others elect.
	OneWayLeader Kind = "oneway-leader"
)

// AllKinds lists every fault, in a fixed order the schedule shuffles.
var AllKinds = []Kind{KillLeader, KillRandom, PauseLeader, PartitionLeader, PartitionRandom, KillAll, RemoveNode,
	KillWorker, CorruptFollower, OneWayLeader}

// ParseKinds parses a comma-separated list of fault names ("all" for every one).
func ParseKinds(s string) ([]Kind, error) {
	if s == "" || s == "all" {
		return AllKinds, nil
	}
	var out []Kind
	for _, name := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(name))
		found := false
		for _, known := range AllKinds {
			found = found || k == known
		}
		if !found {
			return nil, fmt.Errorf("nemesis: unknown fault %q (known: %v)", k, AllKinds)
		}
		out = append(out, k)
	}
	return out, nil
}

// Runner runs a host command and returns its combined output; tests
// replace it to see the commands without Docker.
type Runner func(ctx context.Context, name string, args ...string) (string, error)

// Exec runs commands with os/exec.
func Exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Step is one scheduled fault: a quiet period, then the fault held for Hold.
type Step struct {
	Quiet time.Duration
	Kind  Kind
	Hold  time.Duration
	// Pick draws the node of a random fault (an index into the nodes).
	Pick int
}

// Schedule draws fault steps from a seed. Kinds come in rounds, each round
// a fresh shuffle of every kind, so a run long enough for two rounds
// injects every fault at least twice.
type Schedule struct {
	rng   *rand.Rand
	kinds []Kind
	round []Kind
	// Quiet and Hold bound the random durations (min, max).
	QuietMin, QuietMax, HoldMin, HoldMax time.Duration
}

// NewSchedule returns the schedule for seed over kinds.
func NewSchedule(seed uint64, kinds []Kind) *Schedule {
	return &Schedule{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), kinds: kinds,
		QuietMin: 2 * time.Second, QuietMax: 4 * time.Second,
		HoldMin: 3 * time.Second, HoldMax: 6 * time.Second}
}

func (s *Schedule) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// Next returns the next step.
func (s *Schedule) Next() Step {
	if len(s.round) == 0 {
		s.round = append([]Kind(nil), s.kinds...)
		s.rng.Shuffle(len(s.round), func(i, j int) { s.round[i], s.round[j] = s.round[j], s.round[i] })
	}
	k := s.round[0]
	s.round = s.round[1:]
	return Step{Quiet: s.between(s.QuietMin, s.QuietMax), Kind: k,
		Hold: s.between(s.HoldMin, s.HoldMax), Pick: s.rng.IntN(1 << 30)}
}

// Docker injects faults into containers.
type Docker struct {
	Run Runner
	// Containers maps a node id (as ClusterStatus names it) to its container.
	Containers map[string]string
	// Order is the node ids in a fixed order, for random picks.
	Order []string
	// Leader returns the current leader's node id.
	Leader func(ctx context.Context) (string, error)
	// Membership changes the Raft configuration, for remove-node; nil
	// makes that fault fail to inject.
	Membership Membership
	// Workers are the worker processes kill-worker kills; nil (or none)
	// makes that fault fail to inject.
	Workers Workers
	// Wipeable are the nodes corrupt-follower may damage and wipe: those
	// that join the cluster by themselves when their data dir is empty.
	// A node that bootstraps when empty must not be among them: wiped, it
	// would found a cluster of its own.
	Wipeable []string
	// DataDir is where the nodes' containers mount their data volume
	// (default /data).
	DataDir string
	// RefuseWait bounds how long corrupt-follower waits for the damaged
	// node to refuse to start (default 20 s).
	RefuseWait time.Duration
	Log        *slog.Logger

	mu       sync.Mutex
	removed  map[string]Member // removed by remove-node and not joined back yet
	damaged  map[string]string // node -> host data dir, damaged and not wiped yet
	problems []string          // what the faults showed to be wrong
}

// Fault is an injected fault; Heal undoes it.
type Fault struct {
	Kind  Kind
	Nodes []string
	Heal  func(ctx context.Context) error
}

// leaderWait bounds how long a fault that needs the leader waits for one:
// right after another fault's heal (kill-all above all) the cluster may
// need several election rounds, and a fault skipped then would leave its
// kind under-tested in the run.
const leaderWait = 15 * time.Second

// waitLeader asks for the leader until one answers or leaderWait passes.
func (d *Docker) waitLeader(ctx context.Context) (string, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		id, err := d.Leader(ctx)
		if err == nil || time.Now().After(deadline) || !sleep(ctx, 250*time.Millisecond) {
			return id, err
		}
	}
}

// Inject starts the fault of step and returns how to heal it.
func (d *Docker) Inject(ctx context.Context, st Step) (*Fault, error) {
	target := func() (string, error) {
		switch st.Kind {
		case KillLeader, PauseLeader, PartitionLeader, OneWayLeader:
			id, err := d.waitLeader(ctx)
			if err != nil {
				return "", fmt.Errorf("nemesis: find the leader: %w", err)
			}
			if _, ok := d.Containers[id]; !ok {
				return "", fmt.Errorf("nemesis: leader %q is not one of the nodes %v", id, d.Order)
			}
			return id, nil
		default:
			return d.Order[st.Pick%len(d.Order)], nil
		}
	}
	switch st.Kind {
	case KillLeader, KillRandom:
		id, err := target()
		if err != nil {
			return nil, err
		}
		return d.kill(ctx, st.Kind, []string{id})
	case KillAll:
		return d.kill(ctx, st.Kind, d.Order)
	case PauseLeader:
		id, err := target()
		if err != nil {
			return nil, err
		}
		c := d.Containers[id]
		if _, err := d.Run(ctx, "docker", "pause", c); err != nil {
			return nil, fmt.Errorf("nemesis: pause %s: %w", id, err)
		}
		return &Fault{Kind: st.Kind, Nodes: []string{id}, Heal: func(ctx context.Context) error {
			_, err := d.Run(ctx, "docker", "unpause", c)
			return err
		}}, nil
	case PartitionLeader, PartitionRandom:
		id, err := target()
		if err != nil {
			return nil, err
		}
		return d.isolate(ctx, st.Kind, id, false)
	case OneWayLeader:
		id, err := target()
		if err != nil {
			return nil, err
		}
		return d.isolate(ctx, st.Kind, id, true)
	case RemoveNode:
		return d.removeNode(ctx, st)
	case KillWorker:
		return d.killWorker(ctx, st)
	case CorruptFollower:
		return d.corruptFollower(ctx, st)
	}
	return nil, fmt.Errorf("nemesis: unknown fault %q", st.Kind)
}

func (d *Docker) kill(ctx context.Context, k Kind, ids []string) (*Fault, error) {
	var cs []string
	for _, id := range ids {
		cs = append(cs, d.Containers[id])
	}
	_, err := d.Run(ctx, "docker", append([]string{"kill", "-s", "KILL"}, cs...)...)
	f := &Fault{Kind: k, Nodes: ids, Heal: func(ctx context.Context) error {
		_, err := d.Run(ctx, "docker", append([]string{"start"}, cs...)...)
		return err
	}}
	if err != nil {
		// Some may have died: heal what there is.
		return f, fmt.Errorf("nemesis: kill %v: %w", ids, err)
	}
	return f, nil
}

func (d *Docker) inspect(ctx context.Context, c, format string) (string, error) {
	out, err := d.Run(ctx, "docker", "inspect", "-f", format, c)
	return strings.TrimSpace(out), err
}

// ip returns a container's address on its (single) compose network.
func (d *Docker) ip(ctx context.Context, id string) (string, error) {
	ip, err := d.inspect(ctx, d.Containers[id], "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}")
	if err != nil || ip == "" {
		return "", fmt.Errorf("nemesis: address of %s: %q: %w", id, ip, err)
	}
	return strings.Fields(ip)[0], nil
}

// isolate drops every packet between id and the other nodes, with iptables
// rules in id's network namespace; with inboundOnly, only the packets from
// them (id still reaches them). The host (clients, workers) still reaches
// it through the published port: only the Raft peers are cut off.
func (d *Docker) isolate(ctx context.Context, k Kind, id string, inboundOnly bool) (*Fault, error) {
	pid, err := d.inspect(ctx, d.Containers[id], "{{.State.Pid}}")
	if err != nil || pid == "" || pid == "0" {
		return nil, fmt.Errorf("nemesis: pid of %s: %q: %w", id, pid, err)
	}
	var rules [][]string
	for _, peer := range d.Order {
		if peer == id {
			continue
		}
		ip, err := d.ip(ctx, peer)
		if err != nil {
			return nil, err
		}
		rules = append(rules, []string{"INPUT", "-s", ip, "-j", "DROP"})
		if !inboundOnly {
			rules = append(rules, []string{"OUTPUT", "-d", ip, "-j", "DROP"})
		}
	}
	ipt := func(ctx context.Context, op string, rule []string) error {
		args := append([]string{"-t", pid, "-n", "iptables", "-w", op}, rule...)
		_, err := d.Run(ctx, "nsenter", args...)
		return err
	}
	heal := func(ctx context.Context) error {
		var errs []error
		for _, r := range rules {
			if err := ipt(ctx, "-D", r); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, r := range rules {
		if err := ipt(ctx, "-I", r); err != nil {
			return &Fault{Kind: k, Nodes: []string{id}, Heal: heal}, fmt.Errorf("nemesis: partition %s: %w", id, err)
		}
	}
	return &Fault{Kind: k, Nodes: []string{id}, Heal: heal}, nil
}

// HealAll undoes any fault that may be left, whatever the record says:
// unpauses and starts every container, flushes the filter rules the
// partitions add (Docker's own DNS rules are in the nat table and stay),
// then joins back every node remove-node took out and did not rejoin
// (Removed lists those it could not).
func (d *Docker) HealAll(ctx context.Context) error {
	var errs []error
	damaged := d.damagedNodes()
	for _, id := range d.Order {
		c := d.Containers[id]
		if _, ok := damaged[id]; ok {
			continue // wiped and started below
		}
		if st, _ := d.inspect(ctx, c, "{{.State.Paused}}"); st == "true" {
			if _, err := d.Run(ctx, "docker", "unpause", c); err != nil {
				errs = append(errs, err)
			}
		}
		if st, _ := d.inspect(ctx, c, "{{.State.Running}}"); st != "true" {
			if _, err := d.Run(ctx, "docker", "start", c); err != nil {
				errs = append(errs, err)
			}
		}
		if pid, err := d.inspect(ctx, c, "{{.State.Pid}}"); err == nil && pid != "" && pid != "0" {
			for _, chain := range []string{"INPUT", "OUTPUT"} {
				if _, err := d.Run(ctx, "nsenter", "-t", pid, "-n", "iptables", "-w", "-F", chain); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, m := range d.Removed() {
		if err := d.rejoin(ctx, m); err != nil {
			errs = append(errs, err)
		}
	}
	for id, dir := range d.damagedNodes() {
		if err := d.wipe(ctx, id, dir); err != nil {
			errs = append(errs, err)
		}
	}
	if d.Workers != nil {
		for i := range d.Workers.Len() {
			if err := d.Workers.Start(i); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Workers are worker processes the nemesis can kill.
type Workers interface {
	Len() int
	// Name names worker i in fault records.
	Name(i int) string
	// Busy is how many tasks worker i is running now.
	Busy(i int) int
	// Kill kills worker i at once (SIGKILL) and returns once it is gone.
	Kill(ctx context.Context, i int) error
	// Start starts worker i again; a running worker is left alone.
	Start(i int) error
}

// busyWait bounds how long kill-worker waits for a worker holding tasks.
const busyWait = 3 * time.Second

// killWorker kills a worker process that is running tasks, so that they
// are lost with it: the leader must requeue them (a lost attempt does not
// count as a failed one) and the client still gets each result once. The
// victim is the first busy worker from the seed's pick on; if none is busy
// within busyWait, the picked one dies anyway. The heal starts a new
// process in its place.
func (d *Docker) killWorker(ctx context.Context, st Step) (*Fault, error) {
	if d.Workers == nil || d.Workers.Len() == 0 {
		return nil, errors.New("nemesis: kill-worker needs worker processes")
	}
	n := d.Workers.Len()
	victim, busy := st.Pick%n, 0
	deadline := time.Now().Add(busyWait)
	for found := false; !found && time.Now().Before(deadline); {
		for j := range n {
			if i := (st.Pick + j) % n; d.Workers.Busy(i) > 0 {
				victim, busy, found = i, d.Workers.Busy(i), true
				break
			}
		}
		if !found && !sleep(ctx, 20*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	name := d.Workers.Name(victim)
	d.Log.Info("nemesis: killing a worker", "worker", name, "tasks_running", busy)
	if err := d.Workers.Kill(ctx, victim); err != nil {
		return nil, fmt.Errorf("nemesis: %w", err)
	}
	return &Fault{Kind: KillWorker, Nodes: []string{name}, Heal: func(context.Context) error {
		return d.Workers.Start(victim)
	}}, nil
}

// Event reports a fault's start (Healed false) or its heal.
type Event struct {
	Kind   Kind
	Nodes  []string
	Healed bool
	Err    error
	At     time.Time
}

// Loop injects the schedule's faults until ctx ends, each held for its
// hold and then healed; report sees every start and heal. A fault in
// progress when ctx ends is healed (with a fresh, bounded context) before
// Loop returns. A fault that cannot be injected (no leader during an
// election, say) is reported and skipped.
func (d *Docker) Loop(ctx context.Context, s *Schedule, report func(Event)) {
	for {
		st := s.Next()
		if !sleep(ctx, st.Quiet) {
			return
		}
		f, err := d.Inject(ctx, st)
		if f == nil {
			d.Log.Warn("nemesis: fault not injected", "fault", st.Kind, "err", err)
			report(Event{Kind: st.Kind, Err: err, At: time.Now()})
			continue
		}
		d.Log.Info("nemesis: fault", "fault", f.Kind, "nodes", f.Nodes, "hold", st.Hold, "err", err)
		report(Event{Kind: f.Kind, Nodes: f.Nodes, Err: err, At: time.Now()})
		sleep(ctx, st.Hold)
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err = f.Heal(hctx)
		cancel()
		d.Log.Info("nemesis: healed", "fault", f.Kind, "nodes", f.Nodes, "err", err)
		report(Event{Kind: f.Kind, Nodes: f.Nodes, Healed: true, Err: err, At: time.Now()})
		if ctx.Err() != nil {
			return
		}
	}
}

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Member is a node of the Raft configuration as Cluster.Status lists it.
type Member struct {
	ID, RaftAddr, GRPCAddr string
	Leader                 bool
}

// Membership reaches the Cluster gRPC service of the node named via (a
// node id); every node forwards Remove and Join to the leader. Tests
// replace it.
type Membership interface {
	// Members is the Raft configuration as via sees it.
	Members(ctx context.Context, via string) ([]Member, error)
	Remove(ctx context.Context, via, id string) error
	Join(ctx context.Context, via string, m Member) error
}

// removeNode takes a node that is not the leader out of the Raft
// configuration, through the leader; the heal joins it back with the same
// addresses. The victim's process keeps running throughout.
func (d *Docker) removeNode(ctx context.Context, st Step) (*Fault, error) {
	if d.Membership == nil {
		return nil, errors.New("nemesis: remove-node needs the Cluster API")
	}
	if left := d.Removed(); len(left) > 0 {
		return nil, fmt.Errorf("nemesis: remove-node: %v still not joined back", left)
	}
	// Right after another fault's heal there may be no leader yet: wait
	// a little rather than skip the fault.
	var leader string
	var members []Member
	var err error
	for try := 0; ; try++ {
		if leader, err = d.Leader(ctx); err != nil {
			err = fmt.Errorf("nemesis: find the leader: %w", err)
		} else if members, err = d.Membership.Members(ctx, leader); err != nil {
			err = fmt.Errorf("nemesis: members as %s sees them: %w", leader, err)
		}
		if err == nil {
			break
		}
		if try >= 29 || !sleep(ctx, 500*time.Millisecond) {
			return nil, err
		}
	}
	byID := map[string]Member{}
	for _, m := range members {
		byID[m.ID] = m
	}
	// Candidates in the fixed node order, so the seed picks the same one.
	var cands []Member
	for _, id := range d.Order {
		m, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("nemesis: remove-node: %s is not a member (members %v)", id, members)
		}
		if id != leader && !m.Leader {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("nemesis: remove-node: no follower among %v", members)
	}
	victim := cands[st.Pick%len(cands)]
	if victim.RaftAddr == "" || victim.GRPCAddr == "" {
		return nil, fmt.Errorf("nemesis: remove-node: addresses of %s unknown: %+v", victim.ID, victim)
	}
	d.mu.Lock()
	if d.removed == nil {
		d.removed = map[string]Member{}
	}
	d.removed[victim.ID] = victim
	d.mu.Unlock()
	f := &Fault{Kind: RemoveNode, Nodes: []string{victim.ID},
		Heal: func(ctx context.Context) error { return d.rejoin(ctx, victim) }}
	// Through the leader, never through the victim.
	if err := d.Membership.Remove(ctx, leader, victim.ID); err != nil {
		// The removal may have committed anyway: heal it.
		return f, fmt.Errorf("nemesis: remove %s through %s: %w", victim.ID, leader, err)
	}
	return f, nil
}

// Removed lists the nodes remove-node took out that have not been joined
// back yet.
func (d *Docker) Removed() []Member {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Member
	for _, id := range d.Order {
		if m, ok := d.removed[id]; ok {
			out = append(out, m)
		}
	}
	return out
}

// rejoin joins m back with its old addresses, through the other nodes in
// turn, retrying with backoff until a Join succeeds or ctx ends.
func (d *Docker) rejoin(ctx context.Context, m Member) error {
	var vias []string
	for _, id := range d.Order {
		if id != m.ID {
			vias = append(vias, id)
		}
	}
	if len(vias) == 0 {
		return fmt.Errorf("nemesis: join %s: no other node to ask", m.ID)
	}
	m.Leader = false
	backoff := 100 * time.Millisecond
	var errs []error
	for i := 0; ; i++ {
		via := vias[i%len(vias)]
		err := d.Membership.Join(ctx, via, m)
		if err == nil {
			d.mu.Lock()
			delete(d.removed, m.ID)
			d.mu.Unlock()
			return nil
		}
		d.Log.Warn("nemesis: join failed, retrying", "node", m.ID, "via", via, "attempt", i+1, "err", err)
		errs = append(errs, err)
		if len(errs) > 3 {
			errs = errs[len(errs)-3:]
		}
		if !sleep(ctx, backoff) {
			return fmt.Errorf("nemesis: join %s at %s back: gave up after %d attempts: %w: last errors: %w",
				m.ID, m.RaftAddr, i+1, ctx.Err(), errors.Join(errs...))
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

const defaultRefuseWait = 20 * time.Second

// corruptFollower stops a follower (one of Wipeable), overwrites the first
// pages of its raft.db (bbolt's meta pages) with random bytes and starts
// it: it must refuse to start, with an error naming the file, rather than
// serve a damaged log. If it starts anyway, that is a problem (Problems)
// and the run fails. The heal stops it, wipes its data dir and starts it:
// it joins the cluster again and catches up from the leader (a snapshot,
// then the log). Only a minority loses its copy, so nothing committed is
// lost.
func (d *Docker) corruptFollower(ctx context.Context, st Step) (*Fault, error) {
	if len(d.damagedNodes()) > 0 {
		return nil, errors.New("nemesis: corrupt-follower: a damaged node is not wiped yet")
	}
	leader, err := d.waitLeader(ctx)
	if err != nil {
		return nil, fmt.Errorf("nemesis: find the leader: %w", err)
	}
	var cands []string
	for _, id := range d.Order {
		if id != leader && slices.Contains(d.Wipeable, id) {
			cands = append(cands, id)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("nemesis: corrupt-follower: no follower among the wipeable nodes %v (leader %s)",
			d.Wipeable, leader)
	}
	id := cands[st.Pick%len(cands)]
	c := d.Containers[id]
	dataDir := d.DataDir
	if dataDir == "" {
		dataDir = "/data"
	}
	dir, err := d.inspect(ctx, c,
		`{{range .Mounts}}{{if eq .Destination "`+dataDir+`"}}{{.Source}}{{end}}{{end}}`)
	if err != nil || dir == "" {
		return nil, fmt.Errorf("nemesis: corrupt-follower: host directory of %s:%s: %q: %w", c, dataDir, dir, err)
	}
	if _, err := d.Run(ctx, "docker", "stop", "-t", "10", c); err != nil {
		return nil, fmt.Errorf("nemesis: stop %s: %w", id, err)
	}
	d.mu.Lock()
	if d.damaged == nil {
		d.damaged = map[string]string{}
	}
	d.damaged[id] = dir
	d.mu.Unlock()
	f := &Fault{Kind: CorruptFollower, Nodes: []string{id},
		Heal: func(ctx context.Context) error { return d.wipe(ctx, id, dir) }}
	db := dir + "/raft.db"
	if _, err := d.Run(ctx, "dd", "if=/dev/urandom", "of="+db, "bs=4096", "count=2", "conv=notrunc"); err != nil {
		return f, fmt.Errorf("nemesis: damage %s: %w", db, err)
	}
	if _, err := d.Run(ctx, "docker", "start", c); err != nil {
		return f, fmt.Errorf("nemesis: start %s: %w", id, err)
	}
	if err := d.waitRefusal(ctx, id); err != nil {
		// A run that ends during the wait proves nothing either way: only a
		// wait that ran its course without the refusal is a problem.
		if ctx.Err() == nil {
			d.mu.Lock()
			d.problems = append(d.problems, err.Error())
			d.mu.Unlock()
		}
		return f, err
	}
	return f, nil
}

// waitRefusal waits until the node's log shows it refused its damaged
// raft.db.
func (d *Docker) waitRefusal(ctx context.Context, id string) error {
	wait := d.RefuseWait
	if wait <= 0 {
		wait = defaultRefuseWait
	}
	deadline := time.Now().Add(wait)
	for {
		out, _ := d.Run(ctx, "docker", "logs", "--tail", "20", d.Containers[id])
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "raft.db") && strings.Contains(line, "corrupt") {
				d.Log.Info("nemesis: damaged node refused to start", "node", id, "log", strings.TrimSpace(line))
				return nil
			}
		}
		if !time.Now().After(deadline) && sleep(ctx, 200*time.Millisecond) {
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("nemesis: %s: the run ended before its refusal to start was seen: %w", id, ctx.Err())
		}
		return fmt.Errorf("nemesis: %s started from a damaged raft.db without the error naming it "+
			"(no \"raft.db ... corrupt\" line in its log within %s)", id, wait)
	}
}

// wipe stops a damaged node, empties its data dir and starts it again.
func (d *Docker) wipe(ctx context.Context, id, dir string) error {
	c := d.Containers[id]
	// Stop the restart loop of the refusing node first.
	if _, err := d.Run(ctx, "docker", "stop", "-t", "10", c); err != nil {
		return fmt.Errorf("nemesis: stop %s: %w", id, err)
	}
	if _, err := d.Run(ctx, "find", dir, "-mindepth", "1", "-delete"); err != nil {
		return fmt.Errorf("nemesis: wipe %s: %w", dir, err)
	}
	if _, err := d.Run(ctx, "docker", "start", c); err != nil {
		return fmt.Errorf("nemesis: start %s: %w", id, err)
	}
	d.mu.Lock()
	delete(d.damaged, id)
	d.mu.Unlock()
	return nil
}

func (d *Docker) damagedNodes() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.damaged)
}

// Problems lists what faults showed to be wrong with the cluster (a node
// that started from a damaged raft.db): each fails the run.
func (d *Docker) Problems() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.problems)
}
