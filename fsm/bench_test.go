package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/gridd/gridd/fsm/fsmpb"
)

const benchBatch = 100

// benchIDs makes the ids of batch n once per benchmark, so that building
// commands measures the state machine rather than fmt.
type benchIDs struct{ payload []byte }

func (benchIDs) ids(n int) []string {
	ids := make([]string, benchBatch)
	for i := range ids {
		ids[i] = fmt.Sprintf("task-%d-%d", n, i)
	}
	return ids
}

func (b benchIDs) enqueue(ids []string) *fsmpb.Command {
	tasks := make([]*fsmpb.Task, len(ids))
	for i, id := range ids {
		tasks[i] = &fsmpb.Task{Id: id, Payload: b.payload, Priority: 5}
	}
	return &fsmpb.Command{Cmd: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{SessionId: "s", Tasks: tasks}}}
}

func (b benchIDs) outcomes(ids []string) *fsmpb.Command {
	oc := make([]*fsmpb.Outcome, len(ids))
	for i, id := range ids {
		oc[i] = &fsmpb.Outcome{TaskId: id, Payload: b.payload}
	}
	return cmdOutcomes("s", oc...)
}

func newBench(b *testing.B) (*FSM, benchIDs, *uint64) {
	f := New(Options{})
	idx := uint64(1)
	if r := f.Apply(idx, cmdCreate("s", nil)); r.Err != nil {
		b.Fatal(r.Err)
	}
	return f, benchIDs{payload: make([]byte, 100)}, &idx
}

func apply(b *testing.B, f *FSM, idx *uint64, c *fsmpb.Command) Response {
	*idx++
	r := f.Apply(*idx, c)
	if r.Err != nil {
		b.Fatal(r.Err)
	}
	return r
}

// BenchmarkApplyEnqueue applies one Enqueue of 100 new tasks with 100-byte
// payloads per op, into a session that keeps growing.
func BenchmarkApplyEnqueue(b *testing.B) {
	f, bi, idx := newBench(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		c := bi.enqueue(bi.ids(n))
		n++
		b.StartTimer()
		if r := apply(b, f, idx, c); r.Accepted != benchBatch {
			b.Fatalf("accepted %d", r.Accepted)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*benchBatch), "ns/task")
}

// BenchmarkApplyOutcomes applies one Outcomes of 100 results per op.
func BenchmarkApplyOutcomes(b *testing.B) {
	f, bi, idx := newBench(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		ids := bi.ids(n)
		n++
		apply(b, f, idx, bi.enqueue(ids))
		c := bi.outcomes(ids)
		b.StartTimer()
		if r := apply(b, f, idx, c); r.Recorded != benchBatch {
			b.Fatalf("recorded %d", r.Recorded)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*benchBatch), "ns/task")
}

// BenchmarkApplyAck applies one Ack of 100 results per op.
func BenchmarkApplyAck(b *testing.B) {
	f, bi, idx := newBench(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		ids := bi.ids(n)
		n++
		apply(b, f, idx, bi.enqueue(ids))
		apply(b, f, idx, bi.outcomes(ids))
		c := cmdAckResults("s", ids...)
		b.StartTimer()
		if r := apply(b, f, idx, c); r.Acked != benchBatch {
			b.Fatalf("acked %d", r.Acked)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*benchBatch), "ns/task")
}

// snapshotState builds 1e5 tasks: 60% pending, 30% with an unacknowledged
// result, 10% acknowledged.
func snapshotState(b *testing.B) *FSM {
	f, bi, idx := newBench(b)
	for n := range 1000 {
		ids := bi.ids(n)
		apply(b, f, idx, bi.enqueue(ids))
		if n%10 >= 6 {
			apply(b, f, idx, bi.outcomes(ids))
		}
		if n%10 == 9 {
			apply(b, f, idx, cmdAckResults("s", ids...))
		}
	}
	return f
}

// BenchmarkSnapshotWriteTo captures and writes a state of 1e5 tasks.
func BenchmarkSnapshotWriteTo(b *testing.B) {
	f := snapshotState(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Snapshot().WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestore restores a state of 1e5 tasks; a follower that installs
// a snapshot waits this long.
func BenchmarkRestore(b *testing.B) {
	var buf bytes.Buffer
	if _, err := snapshotState(b).Snapshot().WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	f := New(Options{})
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := f.Restore(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotCapture measures the part that holds the read lock and
// so delays Apply.
func BenchmarkSnapshotCapture(b *testing.B) {
	f := snapshotState(b)
	b.ReportAllocs()
	for b.Loop() {
		f.Snapshot()
	}
}
