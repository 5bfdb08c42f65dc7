package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gridd/gridd/fsm/fsmpb"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: GRIDD_SEED or random)")

// testSeed returns the seed to use and logs it so that a failure can be
// replayed with -seed or GRIDD_SEED.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		if s := os.Getenv("GRIDD_SEED"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("GRIDD_SEED=%q: %v", s, err)
			}
			seed = v
		}
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -seed=%d or GRIDD_SEED=%d)", seed, seed, seed)
	return seed
}

// harness applies commands at consecutive indexes, stamping a clock, and
// checks the invariants after each one.
type harness struct {
	t   testing.TB
	f   *FSM
	idx uint64
	log []*fsmpb.Command
}

func newHarness(t testing.TB, opts Options) *harness {
	return &harness{t: t, f: New(opts)}
}

func (h *harness) apply(c *fsmpb.Command) Response {
	h.t.Helper()
	h.idx++
	if c.NowUnixMs == 0 {
		c.NowUnixMs = 1_000_000 + int64(h.idx)
	}
	h.log = append(h.log, c)
	r := h.f.Apply(h.idx, c)
	checkInvariants(h.t, h.f)
	return r
}

// mustOK applies c and fails the test on a business error.
func (h *harness) mustOK(c *fsmpb.Command) Response {
	h.t.Helper()
	r := h.apply(c)
	if r.Err != nil {
		h.t.Fatalf("apply %v: %v", c, r.Err)
	}
	return r
}

func info(t testing.TB, f *FSM, id string) SessionInfo {
	t.Helper()
	si, ok := f.Session(id)
	if !ok {
		t.Fatalf("session %q not found", id)
	}
	return si
}

// Command builders.

func cmdCreate(id string, a *fsmpb.SessionAttrs) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_CreateSession{CreateSession: &fsmpb.CreateSession{
		SessionId: id, App: "app-" + id, Attrs: a,
	}}}
}

func cmdUpdate(u *fsmpb.UpdateSession) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_UpdateSession{UpdateSession: u}}
}

func cmdClose(id string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{SessionId: id}}}
}

func withKey(key string, c *fsmpb.Command) *fsmpb.Command {
	c.RequestId = key
	return c
}

func cmdEnqueue(session string, ids ...string) *fsmpb.Command {
	e := &fsmpb.Enqueue{SessionId: session}
	for _, id := range ids {
		e.Tasks = append(e.Tasks, &fsmpb.Task{Id: id, Payload: []byte("in-" + id), Priority: 5})
	}
	return &fsmpb.Command{Cmd: &fsmpb.Command_Enqueue{Enqueue: e}}
}

func okOutcome(id string) *fsmpb.Outcome {
	return &fsmpb.Outcome{TaskId: id, Payload: []byte("out-" + id)}
}

func failOutcome(id, msg string) *fsmpb.Outcome {
	return &fsmpb.Outcome{TaskId: id, Error: msg}
}

func cmdOutcomes(session string, oc ...*fsmpb.Outcome) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_Outcomes{Outcomes: &fsmpb.Outcomes{SessionId: session, Outcomes: oc}}}
}

func cmdAckResults(session string, ids ...string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_AckResults{AckResults: &fsmpb.Ack{SessionId: session, TaskIds: ids}}}
}

func cmdAckDead(session string, ids ...string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_AckDeadLetters{AckDeadLetters: &fsmpb.Ack{SessionId: session, TaskIds: ids}}}
}

func cmdCancel(session string, ids ...string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_CancelTasks{CancelTasks: &fsmpb.CancelTasks{SessionId: session, TaskIds: ids}}}
}

func cmdCancelAll(session string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_CancelTasks{CancelTasks: &fsmpb.CancelTasks{SessionId: session, All: true}}}
}

func cmdSetMember(id, raft, grpc string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetMember{SetMember: &fsmpb.SetMember{Id: id, RaftAddr: raft, GrpcAddr: grpc}}}
}

func cmdRemoveMember(id string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_RemoveMember{RemoveMember: &fsmpb.RemoveMember{Id: id}}}
}

func ptr[T any](v T) *T { return &v }

// checkInvariants verifies, from the inside, that every task is in exactly
// one state and that the counters and logs agree with the tasks.
func checkInvariants(t testing.TB, f *FSM) {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := stateInvariants(f.st); err != nil {
		t.Fatalf("invariant broken at index %d: %v", f.lastApplied, err)
	}
}

func stateInvariants(st *state) error {
	if !sort.StringsAreSorted(st.ids) || len(st.ids) != len(st.sessions) {
		return fmt.Errorf("session ids %q do not index %d sessions", st.ids, len(st.sessions))
	}
	for _, id := range st.ids {
		s, ok := st.sessions[id]
		if !ok {
			return fmt.Errorf("id %q without session", id)
		}
		if err := sessionInvariants(st, s); err != nil {
			return fmt.Errorf("session %q: %w", id, err)
		}
	}
	if len(st.requests.byKey) != st.requests.len() || st.requests.len() > st.requests.size {
		return fmt.Errorf("request cache: %d keys, %d in order, size %d",
			len(st.requests.byKey), st.requests.len(), st.requests.size)
	}
	return nil
}

func sessionInvariants(st *state, s *session) error {
	if err := sharedInvariants(s); err != nil {
		return err
	}
	if s.closed {
		if s.tasks != nil || s.pending != 0 || s.results.live != 0 || s.dead.live != 0 {
			return errors.New("closed session keeps tasks, results or dead letters")
		}
		return nil
	}
	var counts [7]uint64
	var retrying uint64
	for id, t := range s.tasks {
		counts[t.state]++
		if t.seq == 0 || t.seq >= st.nextSeq {
			return fmt.Errorf("task %q: seq %d", id, t.seq)
		}
		switch t.state {
		case fsmpb.TaskState_TASK_STATE_PENDING:
			if t.outSeq != 0 {
				return fmt.Errorf("pending task %q has an outcome seq", id)
			}
		case fsmpb.TaskState_TASK_STATE_COMPLETED:
			if !logHas(&s.results, t.outSeq, func(v resultVal) bool { return v.id == id }) {
				return fmt.Errorf("completed task %q has no result", id)
			}
		case fsmpb.TaskState_TASK_STATE_DEAD:
			if !logHas(&s.dead, t.outSeq, func(v deadVal) bool { return v.id == id }) {
				return fmt.Errorf("dead task %q has no dead letter", id)
			}
		case fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED, fsmpb.TaskState_TASK_STATE_DEAD_ACKED,
			fsmpb.TaskState_TASK_STATE_CANCELLED:
		default:
			return fmt.Errorf("task %q in state %v", id, t.state)
		}
		if t.state != fsmpb.TaskState_TASK_STATE_PENDING && (t.payload != nil || t.errors != nil || t.notBefore != 0) {
			return fmt.Errorf("task %q in state %v keeps payload, errors or a not-before time", id, t.state)
		}
		if t.state == fsmpb.TaskState_TASK_STATE_PENDING && t.attempts > 0 {
			retrying++
			if t.notBefore == 0 {
				return fmt.Errorf("failed task %q has no retry time", id)
			}
		}
	}
	switch {
	case counts[fsmpb.TaskState_TASK_STATE_PENDING] != s.pending:
		return fmt.Errorf("pending %d, counted %d", s.pending, counts[fsmpb.TaskState_TASK_STATE_PENDING])
	case uint64(len(s.tasks)) != s.submitted:
		return fmt.Errorf("submitted %d, %d tasks", s.submitted, len(s.tasks))
	case retrying != s.retrying:
		return fmt.Errorf("retrying %d, counted %d", s.retrying, retrying)
	case counts[fsmpb.TaskState_TASK_STATE_CANCELLED] != s.cancelled:
		return fmt.Errorf("cancelled %d, counted %d", s.cancelled, counts[fsmpb.TaskState_TASK_STATE_CANCELLED])
	case counts[fsmpb.TaskState_TASK_STATE_COMPLETED]+counts[fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED] != s.completed:
		return fmt.Errorf("completed %d, counted %v", s.completed, counts)
	case counts[fsmpb.TaskState_TASK_STATE_DEAD]+counts[fsmpb.TaskState_TASK_STATE_DEAD_ACKED] != s.deadLettered:
		return fmt.Errorf("dead-lettered %d, counted %v", s.deadLettered, counts)
	case counts[fsmpb.TaskState_TASK_STATE_COMPLETED] != uint64(s.results.live):
		return fmt.Errorf("%d results for %d completed tasks", s.results.live, counts[fsmpb.TaskState_TASK_STATE_COMPLETED])
	case counts[fsmpb.TaskState_TASK_STATE_DEAD] != uint64(s.dead.live):
		return fmt.Errorf("%d dead letters for %d dead tasks", s.dead.live, counts[fsmpb.TaskState_TASK_STATE_DEAD])
	}
	if err := logOrdered(&s.results); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return logOrdered(&s.dead)
}

func logHas[V any](l *seqLog[V], seq uint64, match func(V) bool) bool {
	for _, e := range l.entries {
		if e.seq == seq {
			return e.live && match(e.v)
		}
	}
	return false
}

func logOrdered[V any](l *seqLog[V]) error {
	live := 0
	for i, e := range l.entries {
		if i > 0 && l.entries[i-1].seq >= e.seq {
			return fmt.Errorf("seq %d after %d", e.seq, l.entries[i-1].seq)
		}
		if e.live {
			live++
		}
	}
	if live != l.live {
		return fmt.Errorf("live count %d, counted %d", l.live, live)
	}
	return nil
}

// recorder is a Listener that writes events as text lines.
type recorder struct{ events []string }

func (r *recorder) TasksReady(session string, tasks []Task) {
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = fmt.Sprintf("%s/a%d", t.ID, t.Attempts)
	}
	r.events = append(r.events, fmt.Sprintf("ready %s %s", session, strings.Join(ids, ",")))
}

func (r *recorder) TasksDone(session string, ids []string) {
	r.events = append(r.events, fmt.Sprintf("done %s %s", session, strings.Join(ids, ",")))
}

func (r *recorder) TasksCancelled(session string, ids []string) {
	r.events = append(r.events, fmt.Sprintf("cancelled %s %s", session, strings.Join(ids, ",")))
}

func (r *recorder) ResultsReady(session string) {
	r.events = append(r.events, "results "+session)
}

func (r *recorder) SessionChanged(info SessionInfo) {
	r.events = append(r.events, fmt.Sprintf("session %s closed=%v", info.ID, info.Closed))
}

func (r *recorder) take() []string {
	ev := r.events
	r.events = nil
	return ev
}

// snapshotBytes writes f's snapshot to memory.
func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := f.Snapshot().WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

// craft frames records as a snapshot and appends a correct trailer, to
// build snapshots that are well formed but say something wrong.
func craft(t testing.TB, recs ...*fsmpb.Record) []byte {
	t.Helper()
	var buf []byte
	for _, r := range recs {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf = binary.AppendUvarint(buf, uint64(len(b)))
		buf = append(buf, b...)
	}
	tr, err := proto.Marshal(&fsmpb.Record{Rec: &fsmpb.Record_Trailer{Trailer: &fsmpb.SnapshotTrailer{
		Records: uint64(len(recs)), Crc32C: crc32.Checksum(buf, castagnoli),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	buf = binary.AppendUvarint(buf, uint64(len(tr)))
	return append(buf, tr...)
}

// sameResponse reports how two responses to the same command differ, or "".
func sameResponse(a, b Response) string {
	ea, eb := "", ""
	if a.Err != nil {
		ea = a.Err.Error()
	}
	if b.Err != nil {
		eb = b.Err.Error()
	}
	if ea != eb {
		return fmt.Sprintf("errors %q vs %q", ea, eb)
	}
	if (a.Session == nil) != (b.Session == nil) {
		return "session info on one side only"
	}
	if a.Session != nil && !equalInfo(*a.Session, *b.Session) {
		return fmt.Sprintf("session %+v vs %+v", *a.Session, *b.Session)
	}
	if (a.Shared == nil) != (b.Shared == nil) {
		return "shared level on one side only"
	}
	if a.Shared != nil && (a.Shared.Level != b.Shared.Level || !bytes.Equal(a.Shared.SHA256, b.Shared.SHA256)) {
		return fmt.Sprintf("shared level %d vs %d", a.Shared.Level, b.Shared.Level)
	}
	a.Err, b.Err, a.Session, b.Session, a.Shared, b.Shared = nil, nil, nil, nil, nil, nil
	if a != b {
		return fmt.Sprintf("counts %+v vs %+v", a, b)
	}
	return ""
}

func equalInfo(a, b SessionInfo) bool {
	if !slices.Equal(a.Attrs.Tags, b.Attrs.Tags) {
		return false
	}
	a.Attrs.Tags, b.Attrs.Tags = nil, nil
	return reflect.DeepEqual(a, b)
}

func sharedInvariants(s *session) error {
	sh := &s.shared
	if s.closed && (len(sh.levels) > 0 || sh.upload != nil) {
		return errors.New("closed session keeps shared data")
	}
	var prev int64
	for _, l := range sh.levels {
		if l.level <= prev || l.level > sh.last {
			return fmt.Errorf("shared level %d after %d (last %d)", l.level, prev, sh.last)
		}
		if sha256.Sum256(l.data) != l.sum {
			return fmt.Errorf("shared level %d does not hash to its sum", l.level)
		}
		prev = l.level
	}
	if u := sh.upload; u != nil && (int64(len(u.buf)) > u.size || int64(cap(u.buf)) != u.size) {
		return fmt.Errorf("upload %q: %d bytes of %d, capacity %d", u.id, len(u.buf), u.size, cap(u.buf))
	}
	return nil
}
