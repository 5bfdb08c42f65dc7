package nemesis

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fake records the commands instead of running them and answers docker
// inspect like a running, unpaused container.
type fake struct {
	mu   sync.Mutex
	cmds []string
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
		default: // the address
			return "10.0.0." + args[3][len(args[3])-1:] + " \n", nil
		}
	}
	f.cmds = append(f.cmds, cmd)
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

func TestParseKinds(t *testing.T) {
	if k, err := ParseKinds("kill-leader,pause-leader"); err != nil || len(k) != 2 {
		t.Fatalf("ParseKinds = %v, %v", k, err)
	}
	if _, err := ParseKinds("kill-leader,nope"); err == nil {
		t.Fatal("unknown fault accepted")
	}
}
