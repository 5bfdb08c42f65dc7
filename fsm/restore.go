package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// ErrBadSnapshot is wrapped by Restore's errors about the snapshot's
// content (as opposed to errors of the reader).
var ErrBadSnapshot = errors.New("bad snapshot")

// maxRecordLen bounds one snapshot record, so that a corrupt length prefix
// cannot make Restore allocate without bound. Records are read in chunks,
// so memory follows the bytes actually present.
const maxRecordLen = 256 << 20

// Restore replaces the state with the snapshot read from r. On any error
// the previous state is kept and the error names what was wrong.
// LastApplied is not changed (see SetLastApplied) and the listener is not
// called: the cluster layer resubscribes when it needs to.
func (f *FSM) Restore(r io.Reader) error {
	st, err := readSnapshot(r, f.opts)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

// crcReader checksums the bytes read through it, and remembers an error
// of the underlying reader so that it is not mistaken for bad content.
type crcReader struct {
	r     *bufio.Reader
	crc   uint32
	ioErr error
	one   [1]byte
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.one[0] = b
		c.crc = crc32.Update(c.crc, castagnoli, c.one[:])
	}
	c.note(err)
	return b, err
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.note(err)
	return n, err
}

func (c *crcReader) note(err error) {
	if err != nil && !errors.Is(err, io.EOF) && c.ioErr == nil {
		c.ioErr = err
	}
}

func readSnapshot(r io.Reader, opts Options) (*state, error) {
	cr := &crcReader{r: bufio.NewReaderSize(r, 64<<10)}
	b := newBuilder(opts)
	var buf []byte
	for {
		crcBefore := cr.crc
		n, err := binary.ReadUvarint(cr)
		switch {
		case errors.Is(err, io.EOF) && b.count == 0:
			return nil, fmt.Errorf("%w: empty", ErrBadSnapshot)
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: truncated after %d records: no trailer", ErrBadSnapshot, b.count)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("%w: truncated in the length of record %d", ErrBadSnapshot, b.count)
		case err != nil && cr.ioErr != nil:
			return nil, fmt.Errorf("read snapshot record %d: %w", b.count, err)
		case err != nil:
			return nil, fmt.Errorf("%w: record %d: bad length prefix: %w", ErrBadSnapshot, b.count, err)
		case n > maxRecordLen:
			return nil, fmt.Errorf("%w: record %d claims %d bytes, more than the %d allowed",
				ErrBadSnapshot, b.count, n, maxRecordLen)
		}
		buf, err = readChunked(cr, buf, int(n))
		if err != nil && cr.ioErr != nil {
			return nil, fmt.Errorf("read snapshot record %d: %w", b.count, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: truncated in record %d (%d of %d bytes)", ErrBadSnapshot, b.count, len(buf), n)
		}
		rec := &fsmpb.Record{}
		if err := proto.Unmarshal(buf, rec); err != nil {
			return nil, fmt.Errorf("%w: record %d does not parse: %w", ErrBadSnapshot, b.count, err)
		}
		if tr := rec.GetTrailer(); tr != nil {
			if err := b.trailer(tr, crcBefore, cr); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
			}
			return b.st, nil
		}
		if err := b.add(rec); err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrBadSnapshot, b.count, err)
		}
		b.count++
	}
}

// readChunked reads n bytes into buf, growing it by at most 1 MiB at a
// time so that a lying length prefix costs only the bytes really there.
func readChunked(r io.Reader, buf []byte, n int) ([]byte, error) {
	const chunk = 1 << 20
	buf = buf[:0]
	for len(buf) < n {
		k := min(n-len(buf), chunk)
		buf = slices.Grow(buf, k)
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// trailer checks the trailer against what was read and that nothing
// follows it, then runs the whole-state checks.
func (b *builder) trailer(tr *fsmpb.SnapshotTrailer, crc uint32, cr *crcReader) error {
	if b.count == 0 {
		return errors.New("trailer without a header")
	}
	if tr.GetRecords() != b.count {
		return fmt.Errorf("trailer counts %d records, read %d", tr.GetRecords(), b.count)
	}
	if tr.GetCrc32C() != crc {
		return fmt.Errorf("checksum mismatch: trailer says %08x, content is %08x", tr.GetCrc32C(), crc)
	}
	if _, err := cr.ReadByte(); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("reading after the trailer: %w", err)
		}
		return fmt.Errorf("data after the trailer (record %d)", b.count)
	}
	return b.finish()
}

// Record kinds in the order a snapshot must hold them.
const (
	rankHeader = iota
	rankSession
	rankTask
	rankResult
	rankDeadLetter
	rankRequest
	rankMember
	rankShared
)

var rankNames = [...]string{"header", "session", "task", "result", "dead letter", "request", "member", "shared data"}

func recordRank(rec *fsmpb.Record) int {
	switch rec.GetRec().(type) {
	case *fsmpb.Record_Header:
		return rankHeader
	case *fsmpb.Record_Session:
		return rankSession
	case *fsmpb.Record_Task:
		return rankTask
	case *fsmpb.Record_Result:
		return rankResult
	case *fsmpb.Record_DeadLetter:
		return rankDeadLetter
	case *fsmpb.Record_Request:
		return rankRequest
	case *fsmpb.Record_Member:
		return rankMember
	case *fsmpb.Record_SharedData, *fsmpb.Record_SharedBlob, *fsmpb.Record_SharedBytes:
		return rankShared
	}
	return -1
}

// builder builds a fresh state from snapshot records, checking each one
// and, at the end, that the records agree with each other.
type builder struct {
	st    *state
	count uint64 // records added so far
	rank  int    // rank of the last record

	lastTaskSession, lastTaskID string
	lastReqSeq                  uint64
	lastMember                  string
	slab                        []task
	shared                      sharedBuilder
}

func newBuilder(opts Options) *builder {
	return &builder{st: newState(opts)}
}

func (b *builder) add(rec *fsmpb.Record) error {
	rank := recordRank(rec)
	switch {
	case rank < 0:
		return errors.New("record of no known kind")
	case b.count == 0 && rank != rankHeader:
		return fmt.Errorf("first record is a %s, want the header", rankNames[rank])
	case b.count > 0 && rank == rankHeader:
		return errors.New("second header")
	case rank < b.rank:
		return fmt.Errorf("%s record after %s records", rankNames[rank], rankNames[b.rank])
	}
	b.rank = rank
	switch r := rec.GetRec().(type) {
	case *fsmpb.Record_Header:
		return b.header(r.Header)
	case *fsmpb.Record_Session:
		return b.session(r.Session)
	case *fsmpb.Record_Task:
		return b.task(r.Task)
	case *fsmpb.Record_Result:
		return b.result(r.Result)
	case *fsmpb.Record_DeadLetter:
		return b.deadLetter(r.DeadLetter)
	case *fsmpb.Record_Request:
		return b.request(r.Request)
	case *fsmpb.Record_Member:
		return b.member(r.Member)
	case *fsmpb.Record_SharedData:
		return b.sharedData(r.SharedData)
	case *fsmpb.Record_SharedBlob:
		return b.sharedBlob(r.SharedBlob)
	case *fsmpb.Record_SharedBytes:
		return b.sharedBytes(r.SharedBytes)
	}
	return nil
}

func (b *builder) header(h *fsmpb.SnapshotHeader) error {
	if h.GetVersion() != SnapshotVersion {
		return fmt.Errorf("unsupported version %d (this gridd reads %d)", h.GetVersion(), SnapshotVersion)
	}
	if h.GetNextSeq() == 0 {
		return errors.New("header: next seq is 0")
	}
	b.st.nextSeq = h.GetNextSeq()
	return nil
}

func (b *builder) session(r *fsmpb.SessionRecord) error {
	id := r.GetId()
	if err := ValidateSessionID(id); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	if n := len(b.st.ids); n > 0 && b.st.ids[n-1] >= id {
		return fmt.Errorf("session %q repeated or out of order", id)
	}
	attrs := attrsFromProto(r.GetAttrs())
	// Snapshots written before retry backoff existed carry zeros.
	if attrs.RetryBackoffMs == 0 {
		attrs.RetryBackoffMs = DefaultRetryBackoffMs
	}
	if attrs.RetryBackoffMaxMs == 0 {
		attrs.RetryBackoffMaxMs = max(DefaultRetryBackoffMax, attrs.RetryBackoffMs)
	}
	if err := ValidateAttrs(attrs); err != nil {
		return fmt.Errorf("session %q: %w", id, err)
	}
	s := newSession(sessionMeta{
		id: id, app: r.GetApp(), attrs: attrs, closed: r.GetClosed(),
		created: r.GetCreatedUnixMs(), updated: r.GetUpdatedUnixMs(),
		submitted: r.GetSubmitted(), completed: r.GetCompleted(),
		deadLettered: r.GetDeadLettered(), retried: r.GetRetried(),
		cancelled: r.GetCancelled(), timedOut: r.GetTimedOut(),
	})
	b.st.sessions[id] = s
	b.st.ids = append(b.st.ids, id)
	return nil
}

// openSession finds the open session a task, result or dead letter names.
func (b *builder) openSession(what, id, sessionID string) (*session, error) {
	s, ok := b.st.sessions[sessionID]
	if !ok {
		return nil, fmt.Errorf("%s %q of unknown session %q", what, id, sessionID)
	}
	if s.closed {
		return nil, fmt.Errorf("%s %q of closed session %q", what, id, sessionID)
	}
	return s, nil
}

func (b *builder) seqOK(seq uint64) error {
	if seq == 0 || seq >= b.st.nextSeq {
		return fmt.Errorf("seq %d outside 1..%d", seq, b.st.nextSeq-1)
	}
	return nil
}

func (b *builder) task(r *fsmpb.TaskRecord) error {
	sid, id := r.GetSessionId(), r.GetId()
	s, err := b.openSession("task", id, sid)
	if err != nil {
		return err
	}
	if n := len(id); n == 0 || n > MaxTaskIDLen {
		return fmt.Errorf("task of session %q: id of %d bytes, want 1..%d", sid, n, MaxTaskIDLen)
	}
	if sid < b.lastTaskSession || (sid == b.lastTaskSession && id <= b.lastTaskID) {
		return fmt.Errorf("task %q of session %q repeated or out of order", id, sid)
	}
	b.lastTaskSession, b.lastTaskID = sid, id
	if err := b.seqOK(r.GetSeq()); err != nil {
		return fmt.Errorf("task %q: %w", id, err)
	}
	state := r.GetState()
	switch state {
	case fsmpb.TaskState_TASK_STATE_PENDING:
		s.pending++
		if r.GetAttempts() > 0 {
			s.retrying++
		}
	case fsmpb.TaskState_TASK_STATE_COMPLETED, fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED,
		fsmpb.TaskState_TASK_STATE_DEAD, fsmpb.TaskState_TASK_STATE_DEAD_ACKED,
		fsmpb.TaskState_TASK_STATE_CANCELLED:
		if r.GetNotBeforeUnixMs() != 0 {
			return fmt.Errorf("task %q: not-before time on a task in state %v", id, state)
		}
		if len(r.GetPayload()) > 0 || len(r.GetErrors()) > 0 {
			return fmt.Errorf("task %q: payload or errors on a task in state %v", id, state)
		}
	default:
		return fmt.Errorf("task %q: state %v cannot be restored", id, state)
	}
	if r.GetAttempts() < 0 {
		return fmt.Errorf("task %q: %d attempts", id, r.GetAttempts())
	}
	if len(b.slab) == 0 {
		b.slab = make([]task, 256)
	}
	t := &b.slab[0]
	b.slab = b.slab[1:]
	*t = task{
		payload: r.GetPayload(), errors: r.GetErrors(), seq: r.GetSeq(),
		requiredLevel: r.GetRequiredSharedDataUpdateLevel(), priority: r.GetPriority(),
		attempts: r.GetAttempts(), state: state, useShared: r.GetUseSharedData(),
		notBefore: r.GetNotBeforeUnixMs(),
	}
	s.tasks[id] = t
	return nil
}

// outcomeTask finds the task a result or dead letter belongs to, which must
// be in state want and not have one yet.
func (b *builder) outcomeTask(what, sid, id string, seq uint64, want fsmpb.TaskState, last uint64) (*session, *task, error) {
	s, err := b.openSession(what, id, sid)
	if err != nil {
		return nil, nil, err
	}
	t, ok := s.tasks[id]
	switch {
	case !ok:
		return nil, nil, fmt.Errorf("%s of unknown task %q in session %q", what, id, sid)
	case t.state != want:
		return nil, nil, fmt.Errorf("%s of task %q in state %v", what, id, t.state)
	case t.outSeq != 0:
		return nil, nil, fmt.Errorf("second %s of task %q", what, id)
	case seq <= last:
		return nil, nil, fmt.Errorf("%s of task %q: seq %d not above the previous %d", what, id, seq, last)
	}
	if err := b.seqOK(seq); err != nil {
		return nil, nil, fmt.Errorf("%s of task %q: %w", what, id, err)
	}
	return s, t, nil
}

func (b *builder) result(r *fsmpb.ResultRecord) error {
	id, seq := r.GetTaskId(), r.GetSeq()
	var last uint64
	if s := b.st.sessions[r.GetSessionId()]; s != nil {
		last = s.results.lastSeq()
	}
	s, t, err := b.outcomeTask("result", r.GetSessionId(), id, seq, fsmpb.TaskState_TASK_STATE_COMPLETED, last)
	if err != nil {
		return err
	}
	if r.GetAttempt() < 1 {
		return fmt.Errorf("result of task %q: attempt %d", id, r.GetAttempt())
	}
	t.outSeq = seq
	s.results.append(seq, resultVal{id: id, payload: r.GetPayload(), attempt: r.GetAttempt()})
	return nil
}

func (b *builder) deadLetter(r *fsmpb.DeadLetterRecord) error {
	id, seq := r.GetTaskId(), r.GetSeq()
	var last uint64
	if s := b.st.sessions[r.GetSessionId()]; s != nil {
		last = s.dead.lastSeq()
	}
	s, t, err := b.outcomeTask("dead letter", r.GetSessionId(), id, seq, fsmpb.TaskState_TASK_STATE_DEAD, last)
	if err != nil {
		return err
	}
	if r.GetAttempts() < 1 {
		return fmt.Errorf("dead letter of task %q: %d attempts", id, r.GetAttempts())
	}
	t.outSeq = seq
	s.dead.append(seq, deadVal{id: id, payload: r.GetPayload(), errors: r.GetErrors(), attempts: r.GetAttempts()})
	return nil
}

func (b *builder) request(r *fsmpb.RequestRecord) error {
	key, kind := r.GetRequestId(), errKind(r.GetErrKind())
	switch {
	case key == "":
		return errors.New("request with an empty key")
	case kind < kindNone || kind >= kindCount:
		return fmt.Errorf("request %q: unknown error kind %d", key, kind)
	case r.GetSeq() <= b.lastReqSeq:
		return fmt.Errorf("request %q: seq %d not above the previous %d", key, r.GetSeq(), b.lastReqSeq)
	}
	if _, dup := b.st.requests.get(key); dup {
		return fmt.Errorf("request %q repeated", key)
	}
	if err := b.seqOK(r.GetSeq()); err != nil {
		return fmt.Errorf("request %q: %w", key, err)
	}
	if sid := r.GetSessionId(); kind == kindNone && sid != "" {
		if _, ok := b.st.sessions[sid]; !ok {
			return fmt.Errorf("request %q answered for unknown session %q", key, sid)
		}
	}
	b.lastReqSeq = r.GetSeq()
	b.st.requests.put(key, answer{session: r.GetSessionId(), kind: kind, msg: r.GetErrMessage(), seq: r.GetSeq(),
		count: r.GetCount(), level: r.GetLevel()})
	return nil
}

func (b *builder) member(m *fsmpb.SetMember) error {
	id := m.GetId()
	if id == "" {
		return errors.New("member with an empty id")
	}
	if id <= b.lastMember {
		return fmt.Errorf("member %q repeated or out of order", id)
	}
	b.lastMember = id
	b.st.members[id] = Member{ID: id, RaftAddr: m.GetRaftAddr(), GRPCAddr: m.GetGrpcAddr()}
	return nil
}

// finish checks that every open session's counters match its tasks and
// that every completed or dead task got its result or dead letter.
func (b *builder) finish() error {
	if err := b.sharedDone(); err != nil {
		return err
	}
	for _, id := range b.st.ids {
		s := b.st.sessions[id]
		if s.closed {
			continue
		}
		var completed, dead, completedLive, deadLive, cancelled uint64
		for _, t := range s.tasks {
			switch t.state {
			case fsmpb.TaskState_TASK_STATE_CANCELLED:
				cancelled++
			case fsmpb.TaskState_TASK_STATE_COMPLETED:
				completedLive++
				completed++
			case fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED:
				completed++
			case fsmpb.TaskState_TASK_STATE_DEAD:
				deadLive++
				dead++
			case fsmpb.TaskState_TASK_STATE_DEAD_ACKED:
				dead++
			}
		}
		switch {
		case uint64(len(s.tasks)) != s.submitted:
			return fmt.Errorf("session %q: %d submitted but %d tasks", id, s.submitted, len(s.tasks))
		case completed != s.completed:
			return fmt.Errorf("session %q: %d completed but %d completed tasks", id, s.completed, completed)
		case cancelled != s.cancelled:
			return fmt.Errorf("session %q: %d cancelled but %d cancelled tasks", id, s.cancelled, cancelled)
		case dead != s.deadLettered:
			return fmt.Errorf("session %q: %d dead-lettered but %d dead tasks", id, s.deadLettered, dead)
		case completedLive != uint64(s.results.live):
			return fmt.Errorf("session %q: %d unacknowledged completed tasks but %d results",
				id, completedLive, s.results.live)
		case deadLive != uint64(s.dead.live):
			return fmt.Errorf("session %q: %d unacknowledged dead tasks but %d dead letters",
				id, deadLive, s.dead.live)
		}
	}
	return nil
}
