package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// SnapshotVersion is the format version written in a snapshot's header.
const SnapshotVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is a captured state. It shares payloads, ids and error lists
// with the live state (they are never modified in place) and copies
// everything else, so it stays valid while Apply goes on.
type Snapshot struct {
	nextSeq  uint64
	sessions []sessionSnap // sorted by id
	requests []requestSnap // application order
	members  []Member      // sorted by id

	sortOnce sync.Once
}

type sessionSnap struct {
	meta    sessionMeta
	tasks   []taskSnap // sorted by id on first WriteTo
	results []logEntry[resultVal]
	dead    []logEntry[deadVal]
	shared  sharedSnap
}

type taskSnap struct {
	id string
	t  task
}

type requestSnap struct {
	key string
	a   answer
}

// Snapshot captures the state at this instant. The capture is independent
// of later Apply calls and may be written out concurrently with them. The
// capture copies fixed-size records only; sorting and encoding wait for
// WriteTo, off the lock.
func (f *FSM) Snapshot() *Snapshot {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.capture()
}

func (st *state) capture() *Snapshot {
	snap := &Snapshot{
		nextSeq:  st.nextSeq,
		sessions: make([]sessionSnap, 0, len(st.ids)),
		requests: make([]requestSnap, 0, st.requests.len()),
		members:  st.sortedMembers(),
	}
	for _, id := range st.ids {
		s := st.sessions[id]
		ss := sessionSnap{
			meta:    s.sessionMeta,
			tasks:   make([]taskSnap, 0, len(s.tasks)),
			results: s.results.liveEntries(),
			dead:    s.dead.liveEntries(),
			shared:  s.shared.capture(),
		}
		for tid, t := range s.tasks {
			ss.tasks = append(ss.tasks, taskSnap{id: tid, t: *t})
		}
		snap.sessions = append(snap.sessions, ss)
	}
	for i := range st.requests.len() {
		key := st.requests.order.At(i)
		snap.requests = append(snap.requests, requestSnap{key: key, a: st.requests.byKey[key]})
	}
	return snap
}

// WriteTo streams the snapshot as records, each prefixed by its length as
// a uvarint: a header, the sessions, tasks, results, dead letters,
// idempotency keys and members, then a trailer holding the number of
// records before it and the CRC-32C (Castagnoli) of every byte before it.
// The order is canonical, so equal states write equal bytes.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	s.sortOnce.Do(s.sortTasks)
	rw := &recordWriter{bw: bufio.NewWriterSize(w, 64<<10)}
	rw.write(&fsmpb.Record{Rec: &fsmpb.Record_Header{Header: &fsmpb.SnapshotHeader{
		Version: SnapshotVersion, NextSeq: s.nextSeq,
	}}})
	for i := range s.sessions {
		rw.write(&fsmpb.Record{Rec: &fsmpb.Record_Session{Session: sessionRecord(&s.sessions[i].meta)}})
	}
	s.writeTasks(rw)
	s.writeLogs(rw)
	for _, r := range s.requests {
		rw.write(&fsmpb.Record{Rec: &fsmpb.Record_Request{Request: &fsmpb.RequestRecord{
			RequestId: r.key, SessionId: r.a.session, ErrKind: int32(r.a.kind),
			ErrMessage: r.a.msg, Seq: r.a.seq, Count: r.a.count, Level: r.a.level,
		}}})
	}
	for _, m := range s.members {
		rw.write(&fsmpb.Record{Rec: &fsmpb.Record_Member{Member: &fsmpb.SetMember{
			Id: m.ID, RaftAddr: m.RaftAddr, GrpcAddr: m.GRPCAddr,
		}}})
	}
	s.writeShared(rw)
	return rw.finish()
}

func (s *Snapshot) sortTasks() {
	for i := range s.sessions {
		slices.SortFunc(s.sessions[i].tasks, func(a, b taskSnap) int { return strings.Compare(a.id, b.id) })
	}
}

func sessionRecord(m *sessionMeta) *fsmpb.SessionRecord {
	return &fsmpb.SessionRecord{
		Id:            m.id,
		App:           m.app,
		Attrs:         attrsToProto(m.attrs),
		Closed:        m.closed,
		CreatedUnixMs: m.created,
		UpdatedUnixMs: m.updated,
		Submitted:     m.submitted,
		Completed:     m.completed,
		DeadLettered:  m.deadLettered,
		Retried:       m.retried,
		Cancelled:     m.cancelled,
		TimedOut:      m.timedOut,
	}
}

// writeTasks writes every task, reusing one record to keep allocations
// independent of the number of tasks.
func (s *Snapshot) writeTasks(rw *recordWriter) {
	tr := &fsmpb.TaskRecord{}
	rec := &fsmpb.Record{Rec: &fsmpb.Record_Task{Task: tr}}
	for i := range s.sessions {
		ss := &s.sessions[i]
		for j := range ss.tasks {
			ts := &ss.tasks[j]
			tr.SessionId = ss.meta.id
			tr.Id = ts.id
			tr.State = ts.t.state
			tr.Payload = ts.t.payload
			tr.Priority = ts.t.priority
			tr.Attempts = ts.t.attempts
			tr.Seq = ts.t.seq
			tr.Errors = ts.t.errors
			tr.UseSharedData = ts.t.useShared
			tr.RequiredSharedDataUpdateLevel = ts.t.requiredLevel
			tr.NotBeforeUnixMs = ts.t.notBefore
			rw.write(rec)
		}
	}
}

// writeLogs writes the results, then the dead letters, of every session.
func (s *Snapshot) writeLogs(rw *recordWriter) {
	rr := &fsmpb.ResultRecord{}
	rec := &fsmpb.Record{Rec: &fsmpb.Record_Result{Result: rr}}
	for i := range s.sessions {
		ss := &s.sessions[i]
		for _, e := range ss.results {
			rr.SessionId, rr.TaskId, rr.Payload = ss.meta.id, e.v.id, e.v.payload
			rr.Seq, rr.Attempt = e.seq, e.v.attempt
			rw.write(rec)
		}
	}
	dr := &fsmpb.DeadLetterRecord{}
	rec = &fsmpb.Record{Rec: &fsmpb.Record_DeadLetter{DeadLetter: dr}}
	for i := range s.sessions {
		ss := &s.sessions[i]
		for _, e := range ss.dead {
			dr.SessionId, dr.TaskId, dr.Payload = ss.meta.id, e.v.id, e.v.payload
			dr.Errors, dr.Seq, dr.Attempts = e.v.errors, e.seq, e.v.attempts
			rw.write(rec)
		}
	}
}

// recordWriter frames records and keeps the count and checksum for the
// trailer. The first error sticks and ends the stream.
type recordWriter struct {
	bw    *bufio.Writer
	crc   uint32
	n     int64
	count uint64
	msg   []byte
	hdr   [binary.MaxVarintLen64]byte
	err   error
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

func (rw *recordWriter) write(rec *fsmpb.Record) {
	if rw.err != nil {
		return
	}
	msg, err := marshalOpts.MarshalAppend(rw.msg[:0], rec)
	if err != nil {
		rw.err = fmt.Errorf("snapshot record %d: %w", rw.count, err)
		return
	}
	rw.msg = msg
	hdr := binary.PutUvarint(rw.hdr[:], uint64(len(msg)))
	rw.crc = crc32.Update(rw.crc, castagnoli, rw.hdr[:hdr])
	rw.crc = crc32.Update(rw.crc, castagnoli, msg)
	rw.put(rw.hdr[:hdr])
	rw.put(msg)
	rw.count++
}

func (rw *recordWriter) put(b []byte) {
	if rw.err != nil {
		return
	}
	n, err := rw.bw.Write(b)
	rw.n += int64(n)
	if err != nil {
		rw.err = fmt.Errorf("write snapshot: %w", err)
	}
}

// finish writes the trailer and flushes.
func (rw *recordWriter) finish() (int64, error) {
	count, crc := rw.count, rw.crc
	rw.write(&fsmpb.Record{Rec: &fsmpb.Record_Trailer{Trailer: &fsmpb.SnapshotTrailer{
		Records: count, Crc32C: crc,
	}}})
	if rw.err == nil {
		if err := rw.bw.Flush(); err != nil {
			rw.err = fmt.Errorf("write snapshot: %w", err)
		}
	}
	return rw.n, rw.err
}

// Hash returns a digest of the whole replicated state (canonical order), to
// compare replicas in tests and after healing. It is the SHA-256 of the
// snapshot stream, whose order is canonical.
func (f *FSM) Hash() string {
	h := sha256.New()
	if _, err := f.Snapshot().WriteTo(h); err != nil {
		// Writing to a hash cannot fail and every record marshals.
		panic(fmt.Sprintf("fsm: hash: %v", err))
	}
	return hex.EncodeToString(h.Sum(nil))
}
