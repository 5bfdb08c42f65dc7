package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// Sentinels of the shared data commands and queries.
var (
	// ErrSharedDataNotFound: the session has no shared data, or not the
	// level asked for any more.
	ErrSharedDataNotFound = errors.New("shared data not found")
	// ErrSharedDataExists: a Set on a session that has shared data.
	ErrSharedDataExists = errors.New("shared data already exists")
	// ErrLevelNotWritten: a level above the latest was asked for.
	ErrLevelNotWritten = errors.New("shared data level not written yet")
	// ErrUploadGone: a chunk or commit names an upload that a newer upload
	// of the same session replaced, or that was aborted.
	ErrUploadGone = errors.New("shared data upload superseded or aborted")
)

const (
	// MaxSharedChunk bounds the data of one chunk entry.
	MaxSharedChunk = 1 << 20
	// MaxSharedDataSize is the state machine's own bound on a payload; the
	// server's (smaller, configurable) limit applies first.
	MaxSharedDataSize = 16 << 30
	// DefaultKeepLevels is how many levels a commit keeps when the entry
	// does not say.
	DefaultKeepLevels = 2
)

// sharedData is a session's shared data: the kept levels, ascending, and
// at most one upload in progress.
type sharedData struct {
	// levels are never modified in place, only replaced, so that snapshots
	// and readers may share them.
	levels []*sharedLevel
	// last is the highest level ever published; it survives Delete and
	// Expire so that a reader never sees levels go backwards.
	last    int64
	expires int64 // unix ms; 0 never
	upload  *sharedUpload
}

type sharedLevel struct {
	level int64
	data  []byte // immutable once published
	sum   [sha256.Size]byte
}

// sharedUpload accumulates chunks. buf has the declared size as capacity
// and grows by append only, so buf[:n] never changes once written and a
// snapshot may share it while later chunks arrive.
type sharedUpload struct {
	id        string
	size      int64
	buf       []byte
	hash      hash.Hash // of buf, fed as chunks arrive
	lastChunk int64     // unix ms of the last chunk, for the leader's abort
}

// SharedLevel is one level of a session's shared data. Data is shared with
// the state machine and must not be modified.
type SharedLevel struct {
	Session       string
	Level         int64
	Data          []byte
	SHA256        []byte
	ExpiresUnixMs int64
}

func (s *session) levelInfo(l *sharedLevel) *SharedLevel {
	return &SharedLevel{Session: s.id, Level: l.level, Data: l.data, SHA256: l.sum[:],
		ExpiresUnixMs: s.shared.expires}
}

func (f *FSM) sharedChunk(now int64, c *fsmpb.SharedDataChunk) Response {
	s, err := f.openSession(c.GetSessionId())
	if err != nil {
		return Response{Err: err}
	}
	size, off, data := c.GetSize(), c.GetOffset(), c.GetData()
	switch {
	case c.GetUploadId() == "":
		return Response{Err: newError(ErrInvalid, "chunk without an upload id")}
	case size < 0 || size > MaxSharedDataSize:
		return Response{Err: newError(ErrInvalid, "shared data size %d is outside 0..%d", size, int64(MaxSharedDataSize))}
	case len(data) > MaxSharedChunk:
		return Response{Err: newError(ErrInvalid, "chunk of %d bytes, more than %d", len(data), MaxSharedChunk)}
	case off < 0 || off > size-int64(len(data)):
		return Response{Err: newError(ErrInvalid, "chunk of %d bytes at offset %d overruns the declared size %d",
			len(data), off, size)}
	}
	u := s.shared.upload
	if off == 0 {
		// A new upload replaces any unfinished one: its stream is gone
		// (a retry is the usual reason) or lost the race.
		u = &sharedUpload{id: c.GetUploadId(), size: size, buf: make([]byte, 0, size), hash: sha256.New()}
		s.shared.upload = u
	}
	switch {
	case u == nil || u.id != c.GetUploadId():
		return Response{Err: newError(ErrUploadGone, "upload %q of session %q", c.GetUploadId(), s.id)}
	case u.size != size:
		return Response{Err: newError(ErrInvalid, "chunk declares size %d, the upload %d", size, u.size)}
	case off != int64(len(u.buf)):
		return Response{Err: newError(ErrInvalid, "chunk at offset %d, expected %d", off, len(u.buf))}
	}
	u.buf = append(u.buf, data...)
	u.hash.Write(data)
	u.lastChunk = now
	return Response{}
}

func (f *FSM) sharedCommit(c *fsmpb.SharedDataCommit) Response {
	s, err := f.openSession(c.GetSessionId())
	if err != nil {
		return Response{Err: err}
	}
	sh := &s.shared
	u := sh.upload
	if u != nil && u.id == c.GetUploadId() {
		// Whatever the outcome, this upload is finished.
		sh.upload = nil
	} else {
		u = nil
	}
	size := c.GetSize()
	var sum [sha256.Size]byte
	switch {
	case size < 0:
		return Response{Err: newError(ErrInvalid, "shared data size %d is negative", size)}
	case u == nil && size > 0:
		return Response{Err: newError(ErrUploadGone, "upload %q of session %q", c.GetUploadId(), s.id)}
	case u != nil && (u.size != size || int64(len(u.buf)) != size):
		return Response{Err: newError(ErrInvalid, "commit of %d bytes, but the upload received %d of %d",
			size, len(u.buf), u.size)}
	case len(c.GetSha256()) != 0 && len(c.GetSha256()) != sha256.Size:
		return Response{Err: newError(ErrInvalid, "sha256 of %d bytes, want %d", len(c.GetSha256()), sha256.Size)}
	}
	if u != nil {
		u.hash.Sum(sum[:0])
	} else {
		sum = sha256.Sum256(nil)
	}
	if len(c.GetSha256()) != 0 && !bytes.Equal(c.GetSha256(), sum[:]) {
		return Response{Err: newError(ErrInvalid, "sha256 mismatch: the payload hashes to %x, the commit says %x",
			sum, c.GetSha256())}
	}
	level := c.GetLevel()
	switch {
	case c.GetSet() && len(sh.levels) > 0:
		return Response{Err: newError(ErrSharedDataExists, "session %q has level %d; use UpdateSharedData",
			s.id, sh.levels[len(sh.levels)-1].level)}
	case !c.GetSet() && len(sh.levels) == 0:
		return Response{Err: newError(ErrSharedDataNotFound, "session %q has no shared data to update; use SetSharedData",
			s.id)}
	case level < 0:
		return Response{Err: newError(ErrInvalid, "update level %d is negative", level)}
	case level == 0:
		level = sh.last + 1
	case level <= sh.last:
		return Response{Err: newError(ErrInvalid, "update level %d is not above the current level %d", level, sh.last)}
	}
	l := &sharedLevel{level: level, sum: sum}
	if u != nil {
		l.data = u.buf
	}
	keep := int(c.GetKeepLevels())
	if keep < 1 {
		keep = DefaultKeepLevels
	}
	levels := append(sh.levels[:len(sh.levels):len(sh.levels)], l)
	if len(levels) > keep {
		levels = levels[len(levels)-keep:]
	}
	sh.levels = levels
	sh.last = level
	sh.expires = c.GetExpiresUnixMs()
	return Response{Shared: s.levelInfo(l)}
}

func (f *FSM) sharedDelete(c *fsmpb.SharedDataDelete) Response {
	s, ok := f.st.sessions[c.GetSessionId()]
	if !ok {
		return Response{Err: newError(ErrSessionNotFound, "%q", c.GetSessionId())}
	}
	had := len(s.shared.levels) > 0 || s.shared.upload != nil
	s.shared = sharedData{last: s.shared.last}
	return Response{SharedDeleted: had}
}

func (f *FSM) sharedExpire(c *fsmpb.SharedDataExpire) Response {
	s, ok := f.st.sessions[c.GetSessionId()]
	if !ok {
		return Response{Err: newError(ErrSessionNotFound, "%q", c.GetSessionId())}
	}
	sh := &s.shared
	if len(sh.levels) == 0 || sh.expires == 0 || sh.expires != c.GetExpiresUnixMs() {
		// Renewed (or deleted) since the sweeper looked.
		return Response{}
	}
	sh.levels = nil
	sh.expires = 0
	return Response{SharedDeleted: true}
}

func (f *FSM) sharedAbort(c *fsmpb.SharedDataAbort) Response {
	s, ok := f.st.sessions[c.GetSessionId()]
	if !ok {
		return Response{Err: newError(ErrSessionNotFound, "%q", c.GetSessionId())}
	}
	if u := s.shared.upload; u != nil && u.id == c.GetUploadId() {
		s.shared.upload = nil
		return Response{SharedDeleted: true}
	}
	return Response{}
}

// SharedData returns a level of a session's shared data: level 0 is the
// latest. Errors: ErrSessionNotFound, ErrSharedDataNotFound (none, or the
// level is no longer kept), ErrLevelNotWritten (above the latest).
func (f *FSM) SharedData(sessionID string, level int64) (SharedLevel, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[sessionID]
	if !ok {
		return SharedLevel{}, newError(ErrSessionNotFound, "%q", sessionID)
	}
	sh := &s.shared
	if len(sh.levels) == 0 {
		if level > sh.last {
			return SharedLevel{}, newError(ErrLevelNotWritten, "session %q: level %d, the latest written is %d",
				sessionID, level, sh.last)
		}
		return SharedLevel{}, newError(ErrSharedDataNotFound, "session %q has no shared data", sessionID)
	}
	latest := sh.levels[len(sh.levels)-1]
	switch {
	case level == 0:
		return *s.levelInfo(latest), nil
	case level > latest.level:
		return SharedLevel{}, newError(ErrLevelNotWritten, "session %q: level %d, the latest is %d",
			sessionID, level, latest.level)
	}
	for _, l := range sh.levels {
		if l.level == level {
			return *s.levelInfo(l), nil
		}
	}
	return SharedLevel{}, newError(ErrSharedDataNotFound, "session %q: level %d is no longer kept (kept: %d..%d)",
		sessionID, level, sh.levels[0].level, latest.level)
}

// SharedLast returns the highest level a session ever published and
// whether it has shared data now; ok is false for an unknown or closed
// session. The leader checks an upload's level with it before taking the
// data.
func (f *FSM) SharedLast(sessionID string) (last int64, has bool, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[sessionID]
	switch {
	case !ok:
		return 0, false, newError(ErrSessionNotFound, "%q", sessionID)
	case s.closed:
		return 0, false, newError(ErrSessionClosed, "%q", sessionID)
	}
	return s.shared.last, len(s.shared.levels) > 0, nil
}

// SharedExpiry is a session's shared data that expired, as the sweeper
// proposes it.
type SharedExpiry struct {
	Session       string
	ExpiresUnixMs int64
}

// StaleUpload is an upload that received nothing for a while.
type StaleUpload struct {
	Session  string
	UploadID string
}

// SharedSweep lists what the leader's sweeper should drop at now: shared
// data whose expiry passed and uploads without a chunk since staleBefore.
func (f *FSM) SharedSweep(now, staleBefore int64) ([]SharedExpiry, []StaleUpload) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var exp []SharedExpiry
	var stale []StaleUpload
	for _, id := range f.st.ids {
		sh := &f.st.sessions[id].shared
		if len(sh.levels) > 0 && sh.expires != 0 && sh.expires <= now {
			exp = append(exp, SharedExpiry{Session: id, ExpiresUnixMs: sh.expires})
		}
		if u := sh.upload; u != nil && u.lastChunk < staleBefore {
			stale = append(stale, StaleUpload{Session: id, UploadID: u.id})
		}
	}
	return exp, stale
}

// Answer returns the first answer to an idempotency key, if it is still
// remembered, so that a retried upload is answered before its data is
// taken again.
func (f *FSM) Answer(key string) (Response, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.st.requests.get(key)
	if !ok {
		return Response{}, false
	}
	return f.replay(a), true
}

// SharedUsage is the central cache's footprint: published levels kept and
// their payload bytes, uploads in progress and the bytes they hold so far.
type SharedUsage struct {
	Levels, Bytes, Uploads, UploadBytes int64
}

// SharedUsage sums the shared data of every session, for metrics.
func (f *FSM) SharedUsage() SharedUsage {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var u SharedUsage
	for _, s := range f.st.sessions {
		for _, l := range s.shared.levels {
			u.Levels++
			u.Bytes += int64(len(l.data))
		}
		if up := s.shared.upload; up != nil {
			u.Uploads++
			u.UploadBytes += int64(len(up.buf))
		}
	}
	return u
}
