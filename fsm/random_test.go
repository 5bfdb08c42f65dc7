package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// gen builds random but plausible commands: a few sessions, overlapping
// task ids, failures, acks, closes and repeated idempotency keys.
type gen struct {
	rng  *rand.Rand
	now  int64
	step int // sessions and task ids are drawn from windows that slide with it
	keys []string
	// ids sent per session, in Enqueue and in Outcomes, so that outcomes
	// and acks mostly name tasks that may exist.
	enqueued, reported map[string][]string
	created            []string // session ids sent in CreateSession
	uploads            map[string]*gUpload
}

// knownIDs draws ids mostly from from, else at random.
func (g *gen) knownIDs(from []string, max int) []string {
	ids := g.taskIDs(max)
	for i := range ids {
		if len(from) > 0 && g.rng.IntN(10) < 8 {
			ids[i] = from[len(from)-1-g.rng.IntN(min(len(from), 40))]
		}
	}
	return ids
}

func (g *gen) pick(weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := g.rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

func (g *gen) session() string {
	switch g.pick(40, 1, 1) {
	case 1:
		return "ghost"
	case 2:
		return ""
	}
	if n := len(g.created); n > 0 && g.rng.IntN(10) < 8 {
		return g.created[n-1-g.rng.IntN(min(n, 4))]
	}
	return fmt.Sprintf("s%d", g.step/100+g.rng.IntN(4))
}

func (g *gen) taskIDs(max int) []string {
	ids := make([]string, 1+g.rng.IntN(max))
	for i := range ids {
		ids[i] = fmt.Sprintf("t%d", g.step/4+g.rng.IntN(30))
	}
	return ids
}

// key returns no key, a new one, or one used before.
func (g *gen) key() string {
	switch g.pick(3, 5, 2) {
	case 0:
		return ""
	case 2:
		if len(g.keys) > 0 {
			return g.keys[g.rng.IntN(len(g.keys))]
		}
	}
	k := fmt.Sprintf("k%d", len(g.keys))
	g.keys = append(g.keys, k)
	return k
}

func (g *gen) small(lo, hi int) int32 { return int32(lo + g.rng.IntN(hi-lo+1)) }

func (g *gen) attrs() *fsmpb.SessionAttrs {
	a := &fsmpb.SessionAttrs{MaxAttempts: g.small(0, 3), Tags: []string{"t"}}
	if g.rng.IntN(10) == 0 {
		a.Priority = g.small(-1, 11)
		a.MinWorkers = g.small(-1, 3)
		a.MaxWorkers = g.small(0, 3)
	}
	return a
}

func (g *gen) update(session string) *fsmpb.UpdateSession {
	u := &fsmpb.UpdateSession{SessionId: session}
	switch g.rng.IntN(4) {
	case 0:
		u.MaxAttempts = ptr(g.small(0, 4))
	case 1:
		u.Priority = ptr(g.small(0, 11))
	case 2:
		u.MinWorkers, u.MaxWorkers = ptr(g.small(0, 3)), ptr(g.small(0, 3))
	default:
		u.ReplaceTags, u.Tags, u.Preemptible = true, []string{fmt.Sprint(g.rng.IntN(3))}, ptr(true)
	}
	return u
}

func (g *gen) command() *fsmpb.Command {
	var c *fsmpb.Command
	g.step++
	switch g.pick(6, 4, 1, 25, 30, 10, 5, 3, 2, 3, 12) {
	case 0:
		id := fmt.Sprintf("s%d", g.step/100+g.rng.IntN(4))
		if g.rng.IntN(20) == 0 {
			id = g.session()
		}
		g.created = append(g.created, id)
		c = withKey(g.key(), cmdCreate(id, g.attrs()))
	case 1:
		c = withKey(g.key(), cmdUpdate(g.update(g.session())))
	case 2:
		id := g.session()
		if g.rng.IntN(10) < 7 {
			// Mostly stop talking to a closed session, as clients would.
			g.created = slices.DeleteFunc(g.created, func(s string) bool { return s == id })
		}
		c = withKey(g.key(), cmdClose(id))
	case 3:
		ids := g.taskIDs(8)
		if g.rng.IntN(50) == 0 {
			ids[0] = ""
		}
		sid := g.session()
		g.enqueued[sid] = append(g.enqueued[sid], ids...)
		c = cmdEnqueue(sid, ids...)
		for _, t := range c.GetEnqueue().GetTasks() {
			t.Payload = fmt.Appendf(nil, "%d", g.rng.Uint32())
			t.Priority = g.small(0, 10)
		}
	case 4:
		var oc []*fsmpb.Outcome
		sid := g.session()
		ids := g.knownIDs(g.enqueued[sid], 8)
		g.reported[sid] = append(g.reported[sid], ids...)
		for _, id := range ids {
			if g.rng.IntN(100) < 60 {
				oc = append(oc, &fsmpb.Outcome{TaskId: id, Payload: fmt.Appendf(nil, "r%d", g.rng.Uint32())})
			} else {
				f := failOutcome(id, fmt.Sprintf("e%d", g.rng.IntN(5)))
				f.Jitter = uint32(g.rng.IntN(1001))
				f.TimedOut = g.rng.IntN(4) == 0
				oc = append(oc, f)
			}
		}
		c = cmdOutcomes(sid, oc...)
	case 5:
		sid := g.session()
		c = cmdAckResults(sid, g.knownIDs(g.reported[sid], 6)...)
	case 6:
		sid := g.session()
		c = cmdAckDead(sid, g.knownIDs(g.reported[sid], 6)...)
	case 7:
		c = withKey(g.key(), cmdSetMember(fmt.Sprintf("n%d", g.rng.IntN(4)), "r", fmt.Sprint(g.rng.IntN(9))))
	case 8:
		c = withKey(g.key(), cmdRemoveMember(fmt.Sprintf("n%d", g.rng.IntN(4))))
	case 10:
		c = g.sharedCommand()
	default:
		sid := g.session()
		if g.rng.IntN(10) == 0 {
			c = cmdCancelAll(sid)
		} else {
			c = cmdCancel(sid, g.knownIDs(g.enqueued[sid], 4)...)
		}
	}
	g.now += int64(g.rng.IntN(1000))
	c.NowUnixMs = g.now
	return c
}

// TestRandomized applies random command sequences, checks every answer
// against a simple model, and then that the log, a snapshot, and a
// snapshot plus the rest of the log all give the same state.
func TestRandomized(t *testing.T) {
	seed := testSeed(t)
	runs, steps := 40, 400
	if testing.Short() {
		runs = 5
	}
	for run := range runs {
		rng := rand.New(rand.NewPCG(seed, uint64(run)))
		randomRun(t, fmt.Sprintf("seed %d run %d", seed, run), rng, steps)
	}
}

func randomRun(t *testing.T, name string, rng *rand.Rand, steps int) {
	opts := Options{RequestCacheSize: 8}
	g := &gen{rng: rng, now: 1_700_000_000_000, enqueued: map[string][]string{}, reported: map[string][]string{}}
	h := newHarness(t, opts)
	m := newModel(opts.RequestCacheSize)
	mid := rng.IntN(steps)
	var midSnap []byte
	var resps []Response
	for i := range steps {
		c := g.command()
		r := h.apply(c)
		resps = append(resps, r)
		if err := m.check(c, r, h.f); err != nil {
			t.Fatalf("%s: step %d %v: %v", name, i, c, err)
		}
		if i == mid {
			midSnap = snapshotBytes(t, h.f)
		}
		if rng.IntN(50) == 0 {
			// Re-applying an old index changes nothing.
			before := h.f.Hash()
			old := 1 + rng.Uint64N(h.idx)
			if r := h.f.Apply(old, h.log[old-1]); sameResponse(r, Response{}) != "" || h.f.Hash() != before {
				t.Fatalf("%s: re-applying index %d changed something", name, old)
			}
		}
	}
	if testing.Verbose() {
		closed := 0
		for _, s := range m.sessions {
			if s.closed {
				closed++
			}
		}
		t.Logf("%s: %+v, %d repeated keys, %d sessions (%d closed), %d shared data levels", name, m.stats, m.repeats,
			len(m.sessions), closed, m.levels)
	}
	checkReplays(t, name, rng, h, resps, mid, midSnap)
}

// checkReplays checks that a snapshot, the log replayed in batches, and the
// mid-way snapshot mid plus the log all give h's final state.
func checkReplays(t *testing.T, name string, rng *rand.Rand, h *harness, resps []Response, mid int, midSnap []byte) {
	opts := h.f.opts
	want := h.f.Hash()
	// (a) snapshot -> restore.
	restored := New(opts)
	if err := restored.Restore(bytes.NewReader(snapshotBytes(t, h.f))); err != nil {
		t.Fatalf("%s: restore: %v", name, err)
	}
	if restored.Hash() != want || view(restored) != view(h.f) {
		t.Fatalf("%s: restored state differs", name)
	}
	// (b) replaying the log, in random batches, gives the same answers
	// and the same state.
	replay := New(opts)
	for i := 0; i < len(h.log); {
		n := min(1+rng.IntN(64), len(h.log)-i)
		idx := make([]uint64, n)
		for j := range idx {
			idx[j] = uint64(i + j + 1)
		}
		for j, r := range replay.ApplyBatch(idx, h.log[i:i+n]) {
			if d := sameResponse(r, resps[i+j]); d != "" {
				t.Fatalf("%s: replay of index %d answered differently: %s", name, i+j+1, d)
			}
		}
		i += n
	}
	if replay.Hash() != want {
		t.Fatalf("%s: replayed log gives another state", name)
	}
	// (c) mid-way snapshot plus the rest of the log; the whole log is
	// offered and the indexes the snapshot covers are skipped.
	late := New(opts)
	if err := late.Restore(bytes.NewReader(midSnap)); err != nil {
		t.Fatalf("%s: restore mid snapshot: %v", name, err)
	}
	late.SetLastApplied(uint64(mid + 1))
	for i, c := range h.log {
		late.Apply(uint64(i+1), c)
	}
	checkInvariants(t, late)
	if late.Hash() != want {
		t.Fatalf("%s: mid snapshot + log gives another state", name)
	}
}

// model is a deliberately naive reference for the answers and counters.
type model struct {
	sessions  map[string]*mSession
	answers   map[string]mAnswer
	order     []string
	cacheSize int
	want      Response // the counts the last command should answer
	wantLevel int64    // the level the last commit should answer
	levels    int      // shared data levels published over the run
	stats     Response // totals over the run, to show what was exercised
	repeats   int
}

type mSession struct {
	attrs                                     Attrs
	closed                                    bool
	tasks                                     map[string]*mTask
	submitted, completed, dead, retried       uint64
	pending, resultsUnacked, deadLettersUnack uint64
	cancelled, retrying, timedOut             uint64
	shared                                    mShared
}

type mTask struct {
	state    fsmpb.TaskState
	attempts int32
}

type mAnswer struct {
	session string
	err     error
}

func newModel(cacheSize int) *model {
	return &model{sessions: map[string]*mSession{}, answers: map[string]mAnswer{}, cacheSize: cacheSize}
}

// check compares f's answer r to c with the model, advances the model, and
// compares every session's counters.
func (m *model) check(c *fsmpb.Command, r Response, f *FSM) error {
	if err := m.answer(c, r); err != nil {
		return err
	}
	for id, s := range m.sessions {
		got, ok := f.Session(id)
		if !ok {
			return fmt.Errorf("session %q missing", id)
		}
		want := mInfo(s)
		if got.Closed != s.closed || got.Submitted != want.Submitted || got.Pending != want.Pending ||
			got.Completed != want.Completed || got.DeadLettered != want.DeadLettered || got.Retried != want.Retried ||
			got.ResultsUnacked != want.ResultsUnacked || got.DeadLettersUnacked != want.DeadLettersUnacked ||
			got.Cancelled != want.Cancelled || got.Retrying != want.Retrying || got.TimedOut != want.TimedOut {
			return fmt.Errorf("session %q counters %+v, model %+v", id, got, want)
		}
	}
	if err := m.checkShared(f); err != nil {
		return err
	}
	if len(f.Sessions()) != len(m.sessions) {
		return fmt.Errorf("%d sessions, model has %d", len(f.Sessions()), len(m.sessions))
	}
	return nil
}

func mInfo(s *mSession) SessionInfo {
	return SessionInfo{
		Submitted: s.submitted, Pending: s.pending, Completed: s.completed, DeadLettered: s.dead,
		Retried: s.retried, ResultsUnacked: s.resultsUnacked, DeadLettersUnacked: s.deadLettersUnack,
		Cancelled: s.cancelled, Retrying: s.retrying, TimedOut: s.timedOut,
	}
}

func (m *model) answer(c *fsmpb.Command, r Response) error {
	key := c.GetRequestId()
	switch c.GetCmd().(type) {
	case *fsmpb.Command_Enqueue, *fsmpb.Command_Outcomes, *fsmpb.Command_AckResults, *fsmpb.Command_AckDeadLetters:
		key = ""
	}
	if a, ok := m.answers[key]; ok && key != "" {
		if !sameKind(a.err, r.Err) || (a.err != nil && a.err.Error() != r.Err.Error()) {
			return fmt.Errorf("repeated key %q answered %v, first %v", key, r.Err, a.err)
		}
		if a.err == nil && a.session != "" && (r.Session == nil || r.Session.ID != a.session) {
			return fmt.Errorf("repeated key %q answered session %+v, first %q", key, r.Session, a.session)
		}
		m.repeats++
		return nil
	}
	session, want := m.apply(c)
	if !sameKind(want, r.Err) {
		return fmt.Errorf("answered error %v, model says %v", r.Err, want)
	}
	if key != "" && !errors.Is(r.Err, ErrUploadGone) {
		m.answers[key] = mAnswer{session: session, err: r.Err}
		m.order = append(m.order, key)
		if len(m.order) > m.cacheSize {
			delete(m.answers, m.order[0])
			m.order = m.order[1:]
		}
	}
	return m.counts(c, r)
}

func sameKind(a, b error) bool {
	for _, s := range []error{ErrInvalid, ErrSessionClosed, ErrSessionExists, ErrSessionNotFound,
		ErrSharedDataNotFound, ErrSharedDataExists, ErrLevelNotWritten, ErrUploadGone} {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	return (a == nil) == (b == nil)
}

// apply advances the model and returns the session a keyed command acted
// on and the error kind it expects.
func (m *model) apply(c *fsmpb.Command) (string, error) {
	m.want = Response{}
	switch b := c.GetCmd().(type) {
	case *fsmpb.Command_CreateSession:
		id := b.CreateSession.GetSessionId()
		attrs := DefaultAttrs(b.CreateSession.GetAttrs())
		switch {
		case id == "" || len(id) > MaxSessionIDLen:
			return id, ErrInvalid
		case m.sessions[id] != nil:
			return id, ErrSessionExists
		case ValidateAttrs(attrs) != nil:
			return id, ErrInvalid
		}
		m.sessions[id] = &mSession{attrs: attrs, tasks: map[string]*mTask{}}
		return id, nil
	case *fsmpb.Command_UpdateSession:
		id := b.UpdateSession.GetSessionId()
		s, err := m.open(id)
		if err != nil {
			return id, err
		}
		a := ApplyUpdate(s.attrs, b.UpdateSession)
		if ValidateAttrs(a) != nil {
			return id, ErrInvalid
		}
		s.attrs = a
		return id, nil
	case *fsmpb.Command_CloseSession:
		id := b.CloseSession.GetSessionId()
		s := m.sessions[id]
		if s == nil {
			return id, ErrSessionNotFound
		}
		s.closed, s.tasks, s.pending, s.resultsUnacked, s.deadLettersUnack, s.retrying = true, nil, 0, 0, 0, 0
		s.shared = mShared{}
		return id, nil
	case *fsmpb.Command_Enqueue:
		return "", m.enqueue(b.Enqueue)
	case *fsmpb.Command_Outcomes:
		m.outcomes(b.Outcomes)
	case *fsmpb.Command_AckResults:
		m.ack(b.AckResults, fsmpb.TaskState_TASK_STATE_COMPLETED, fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED)
	case *fsmpb.Command_AckDeadLetters:
		m.ack(b.AckDeadLetters, fsmpb.TaskState_TASK_STATE_DEAD, fsmpb.TaskState_TASK_STATE_DEAD_ACKED)
	case *fsmpb.Command_SetMember:
		if b.SetMember.GetId() == "" {
			return "", ErrInvalid
		}
	case *fsmpb.Command_CancelTasks:
		return "", m.cancel(b.CancelTasks)
	case *fsmpb.Command_SharedDataChunk, *fsmpb.Command_SharedDataCommit, *fsmpb.Command_SharedDataDelete,
		*fsmpb.Command_SharedDataExpire, *fsmpb.Command_SharedDataAbort:
		return m.applyShared(c)
	}
	return "", nil
}

func (m *model) open(id string) (*mSession, error) {
	s := m.sessions[id]
	switch {
	case s == nil:
		return nil, ErrSessionNotFound
	case s.closed:
		return nil, ErrSessionClosed
	}
	return s, nil
}

func (m *model) enqueue(e *fsmpb.Enqueue) error {
	s, err := m.open(e.GetSessionId())
	if err != nil {
		return err
	}
	for _, t := range e.GetTasks() {
		if t.GetId() == "" {
			return ErrInvalid
		}
	}
	for _, t := range e.GetTasks() {
		if s.tasks[t.GetId()] != nil {
			m.want.Duplicates++
			continue
		}
		s.tasks[t.GetId()] = &mTask{state: fsmpb.TaskState_TASK_STATE_PENDING}
		s.submitted++
		s.pending++
		m.want.Accepted++
	}
	return nil
}

func (m *model) outcomes(o *fsmpb.Outcomes) {
	s, err := m.open(o.GetSessionId())
	for _, oc := range o.GetOutcomes() {
		var t *mTask
		if err == nil {
			t = s.tasks[oc.GetTaskId()]
		}
		if t == nil || t.state != fsmpb.TaskState_TASK_STATE_PENDING {
			m.want.Ignored++
			continue
		}
		m.want.Recorded++
		if oc.GetTimedOut() {
			s.timedOut++
		}
		if t.attempts > 0 {
			s.retrying-- // back below if it is retried again
		}
		if oc.GetError() == "" {
			t.state = fsmpb.TaskState_TASK_STATE_COMPLETED
			s.pending--
			s.completed++
			s.resultsUnacked++
			continue
		}
		t.attempts++
		if t.attempts >= s.attrs.MaxAttempts {
			t.state = fsmpb.TaskState_TASK_STATE_DEAD
			s.pending--
			s.dead++
			s.deadLettersUnack++
			m.want.DeadLettered++
			continue
		}
		s.retried++
		s.retrying++
		m.want.Requeued++
	}
}

func (m *model) cancel(c *fsmpb.CancelTasks) error {
	s, err := m.open(c.GetSessionId())
	if err != nil {
		return err
	}
	ids := c.GetTaskIds()
	if c.GetAll() {
		ids = nil
		for id := range s.tasks {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if id == "" {
			return ErrInvalid
		}
	}
	for _, id := range ids {
		t := s.tasks[id]
		if t == nil || t.state != fsmpb.TaskState_TASK_STATE_PENDING {
			continue
		}
		if t.attempts > 0 {
			s.retrying--
		}
		t.state = fsmpb.TaskState_TASK_STATE_CANCELLED
		s.pending--
		s.cancelled++
		m.want.Cancelled++
	}
	return nil
}

func (m *model) ack(a *fsmpb.Ack, from, to fsmpb.TaskState) {
	s, err := m.open(a.GetSessionId())
	if err != nil {
		return
	}
	for _, id := range a.GetTaskIds() {
		if t := s.tasks[id]; t != nil && t.state == from {
			t.state = to
			m.want.Acked++
			if from == fsmpb.TaskState_TASK_STATE_COMPLETED {
				s.resultsUnacked--
			} else {
				s.deadLettersUnack--
			}
		}
	}
}

func (m *model) counts(c *fsmpb.Command, r Response) error {
	got := r
	if got.Shared != nil {
		if r.Err != nil || got.Shared.Level != m.wantLevel {
			return fmt.Errorf("shared level %d answered, model %d (err %v)", got.Shared.Level, m.wantLevel, r.Err)
		}
		m.levels++
	}
	got.Err, got.Session, got.Shared = nil, nil, nil
	m.stats.Accepted += got.Accepted
	m.stats.Duplicates += got.Duplicates
	m.stats.Recorded += got.Recorded
	m.stats.Ignored += got.Ignored
	m.stats.Requeued += got.Requeued
	m.stats.DeadLettered += got.DeadLettered
	m.stats.Acked += got.Acked
	m.stats.Cancelled += got.Cancelled
	if got != m.want {
		return fmt.Errorf("counts %+v, model %+v", got, m.want)
	}
	if _, ok := c.GetCmd().(*fsmpb.Command_CreateSession); ok && r.Err == nil {
		if r.Session == nil || !strings.HasPrefix(r.Session.App, "app-") {
			return fmt.Errorf("create answered %+v", r.Session)
		}
	}
	return nil
}
