// Package checker judges a jepsen history: the queue checker counts lost,
// duplicated and unexpected task outcomes; the sessions checker asks
// porcupine whether session metadata operations are linearizable.
package checker

import (
	"fmt"
	"sort"

	"github.com/gridd/gridd/jepsen/history"
)

// QueueResult is the queue checker's verdict and its counts.
type QueueResult struct {
	Valid bool `json:"valid"`
	// Attempted tasks: in any submit invocation.
	Attempted int `json:"attempted"`
	// Acknowledged tasks: in a submit that completed ok.
	Acknowledged int `json:"acknowledged"`
	// Unknown tasks: only in submits with an unknown outcome (info).
	Unknown int `json:"unknown"`
	// Results and DeadLetters delivered to the application.
	Results     int `json:"results"`
	DeadLetters int `json:"dead_letters"`
	// Lost: acknowledged tasks without any result or dead letter.
	Lost int `json:"lost"`
	// Duplicated: tasks delivered (result or dead letter) more than once.
	Duplicated int `json:"duplicated"`
	// Unexpected: deliveries of tasks never submitted, or only in submits
	// that certainly failed.
	Unexpected int `json:"unexpected"`
	// WrongOutcome: a poison task with a result, or a healthy task
	// dead-lettered (the harness's workers fail only poison tasks).
	WrongOutcome int `json:"wrong_outcome"`
	// Recovered: tasks of unknown-outcome submits that were delivered
	// (allowed: the write happened after all).
	Recovered int `json:"recovered"`
	// WireRepeats: results the server sent again and the SDK dropped
	// (allowed; counted to show the dedup at work).
	WireRepeats int `json:"wire_repeats"`
	// Examples of each problem, at most a few of each, for the report.
	LostExamples       []string `json:"lost_examples,omitempty"`
	DuplicatedExamples []string `json:"duplicated_examples,omitempty"`
	UnexpectedExamples []string `json:"unexpected_examples,omitempty"`
	WrongExamples      []string `json:"wrong_examples,omitempty"`
}

const maxExamples = 10

type taskState struct {
	acked, unknown, failed, attempted bool
	poison                            bool
	results, deadLetters              int
}

// Queue checks the queue workload's events in ops: every acknowledged task
// must have exactly one outcome (a result or a dead letter) at the client,
// none twice, none for a task never submitted.
func Queue(ops []history.Op) QueueResult {
	tasks := map[string]*taskState{}
	get := func(session, id string) *taskState {
		k := session + "/" + id
		t := tasks[k]
		if t == nil {
			t = &taskState{}
			tasks[k] = t
		}
		return t
	}
	// A submit's completion names no tasks: take them from the process's
	// open invocation.
	open := map[int]history.Op{}
	var r QueueResult
	for _, op := range ops {
		switch op.F {
		case history.Submit:
			if op.Type == history.Invoke {
				open[op.Process] = op
				poison := map[string]bool{}
				for _, id := range op.Value.Poison {
					poison[id] = true
				}
				for _, id := range op.Value.Tasks {
					t := get(op.Value.Session, id)
					t.attempted = true
					t.poison = t.poison || poison[id]
				}
				continue
			}
			inv, ok := open[op.Process]
			if !ok {
				continue
			}
			delete(open, op.Process)
			for _, id := range inv.Value.Tasks {
				t := get(inv.Value.Session, id)
				switch op.Type {
				case history.OK:
					t.acked = true
				case history.Info:
					t.unknown = true
				case history.Fail:
					t.failed = true
				}
			}
		case history.Result, history.DeadLetter:
			for _, id := range op.Value.Tasks {
				t := get(op.Value.Session, id)
				if op.F == history.Result {
					t.results++
					r.Results++
				} else {
					t.deadLetters++
					r.DeadLetters++
				}
			}
		case history.Repeats:
			r.WireRepeats += op.Value.Count
		}
	}
	// A submit still open at the end of the history has an unknown outcome.
	for _, inv := range open {
		for _, id := range inv.Value.Tasks {
			get(inv.Value.Session, id).unknown = true
		}
	}
	keys := make([]string, 0, len(tasks))
	for k := range tasks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	add := func(list *[]string, s string) {
		if len(*list) < maxExamples {
			*list = append(*list, s)
		}
	}
	for _, k := range keys {
		t := tasks[k]
		n := t.results + t.deadLetters
		if t.attempted {
			r.Attempted++
		}
		switch {
		case t.acked:
			r.Acknowledged++
		case t.unknown:
			r.Unknown++
		}
		switch {
		case n > 0 && !t.acked && !t.unknown:
			r.Unexpected++
			add(&r.UnexpectedExamples, k)
		case n > 0 && !t.acked:
			r.Recovered++
		}
		if t.acked && n == 0 {
			r.Lost++
			add(&r.LostExamples, k)
		}
		if n > 1 {
			r.Duplicated++
			add(&r.DuplicatedExamples, fmt.Sprintf("%s (%d results, %d dead letters)", k, t.results, t.deadLetters))
		}
		if t.attempted && ((t.poison && t.results > 0) || (!t.poison && t.deadLetters > 0)) {
			r.WrongOutcome++
			add(&r.WrongExamples, fmt.Sprintf("%s (poison=%v, %d results, %d dead letters)", k, t.poison, t.results, t.deadLetters))
		}
	}
	r.Valid = r.Lost == 0 && r.Duplicated == 0 && r.Unexpected == 0 && r.WrongOutcome == 0
	return r
}
