package dispatch

import (
	"reflect"
	"testing"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		sessions []SessionView
		workers  []WorkerView
		want     []Decision
	}{
		{
			name:     "nothing to do",
			sessions: []SessionView{{ID: "a", Priority: 5}},
			workers:  []WorkerView{{ID: "w1"}},
			want:     nil,
		},
		{
			name:     "idle worker binds to the session with ready tasks",
			sessions: []SessionView{{ID: "a", Priority: 5}, {ID: "b", Priority: 5, Ready: 3}},
			workers:  []WorkerView{{ID: "w1"}},
			want:     []Decision{{Worker: "w1", Action: Bind, Session: "b"}},
		},
		{
			name:     "higher priority first",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100}, {ID: "high", Priority: 9, Ready: 1}},
			workers:  []WorkerView{{ID: "w1"}, {ID: "w2"}},
			want: []Decision{
				{Worker: "w1", Action: Bind, Session: "high"},
				// high has one ready task: a second worker would sit empty.
				{Worker: "w2", Action: Bind, Session: "low"},
			},
		},
		{
			name:     "equal priorities share the workers",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100}, {ID: "b", Priority: 5, Ready: 100}},
			workers:  []WorkerView{{ID: "w1"}, {ID: "w2"}, {ID: "w3"}, {ID: "w4"}},
			want: []Decision{
				{Worker: "w1", Action: Bind, Session: "a"},
				{Worker: "w2", Action: Bind, Session: "b"},
				{Worker: "w3", Action: Bind, Session: "a"},
				{Worker: "w4", Action: Bind, Session: "b"},
			},
		},
		{
			name:     "existing bindings count towards fairness",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100}, {ID: "b", Priority: 5, Ready: 100}},
			workers:  []WorkerView{{ID: "w1", Bound: "a", Busy: true}, {ID: "w2"}},
			want:     []Decision{{Worker: "w2", Action: Bind, Session: "b"}},
		},
		{
			name:     "max_workers is respected",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100, MaxWorkers: 1}},
			workers:  []WorkerView{{ID: "w1"}, {ID: "w2"}},
			want:     []Decision{{Worker: "w1", Action: Bind, Session: "a"}},
		},
		{
			name:     "closed session releases its workers",
			sessions: []SessionView{{ID: "a", Closed: true}},
			workers:  []WorkerView{{ID: "w1", Bound: "a", Busy: true}},
			want:     []Decision{{Worker: "w1", Action: Unbind, Session: "a"}},
		},
		{
			name:     "unknown session releases its workers",
			sessions: nil,
			workers:  []WorkerView{{ID: "w1", Bound: "gone"}},
			want:     []Decision{{Worker: "w1", Action: Unbind, Session: "gone"}},
		},
		{
			name:     "an empty-handed worker moves to a session that needs it",
			sessions: []SessionView{{ID: "a", Priority: 5}, {ID: "b", Priority: 5, Ready: 10}},
			workers:  []WorkerView{{ID: "w1", Bound: "a"}},
			want:     []Decision{{Worker: "w1", Action: Unbind, Session: "a"}},
		},
		{
			name:     "a busy worker stays",
			sessions: []SessionView{{ID: "a", Priority: 5}, {ID: "b", Priority: 5, Ready: 10}},
			workers:  []WorkerView{{ID: "w1", Bound: "a", Busy: true}},
			want:     nil,
		},
		{
			name:     "a worker stays bound while its session has work, even if others wait",
			sessions: []SessionView{{ID: "a", Priority: 1, Ready: 5}, {ID: "b", Priority: 9, Ready: 10}},
			workers:  []WorkerView{{ID: "w1", Bound: "a"}},
			want:     nil,
		},
		{
			name:     "no idle session work keeps bindings",
			sessions: []SessionView{{ID: "a", Priority: 5}},
			workers:  []WorkerView{{ID: "w1", Bound: "a"}},
			want:     nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.sessions, tt.workers)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Plan() = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
