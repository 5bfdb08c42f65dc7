package fsm

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// gUpload is the generator's view of an upload it is sending.
type gUpload struct {
	id   string
	data []byte
	off  int
}

// sharedCommand draws a shared data command: mostly the next chunk or the
// commit of an upload in progress, sometimes a new upload, a delete, an
// expire, an abort, or a malformed chunk.
func (g *gen) sharedCommand() *fsmpb.Command {
	sid := g.session()
	if g.uploads == nil {
		g.uploads = map[string]*gUpload{}
	}
	u := g.uploads[sid]
	switch p := g.rng.IntN(22); {
	case u == nil || p < 3:
		size := g.rng.IntN(20)
		if g.rng.IntN(10) == 0 {
			size = 0
		}
		u = &gUpload{id: fmt.Sprintf("u%d", g.step), data: fmt.Appendf(nil, "%0*d", size, g.rng.Uint32())[:size]}
		g.uploads[sid] = u
		if size == 0 {
			return g.commit(sid, u)
		}
		return g.chunk(sid, u)
	case p < 14 && u.off < len(u.data):
		return g.chunk(sid, u)
	case p < 16 || (p < 18 && u.off == len(u.data)):
		delete(g.uploads, sid)
		return g.commit(sid, u)
	case p < 18:
		return withKey(g.key(), &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataDelete{SharedDataDelete: &fsmpb.SharedDataDelete{SessionId: sid}}})
	case p < 19:
		// An expiry the leader may have seen: recent commit times.
		at := g.now - int64(g.rng.IntN(3000)) + 5000
		return &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataExpire{SharedDataExpire: &fsmpb.SharedDataExpire{SessionId: sid, ExpiresUnixMs: at}}}
	case p < 20:
		return &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataAbort{SharedDataAbort: &fsmpb.SharedDataAbort{SessionId: sid, UploadId: u.id}}}
	default:
		// Malformed: out of order, or overrunning.
		return cmdChunk(sid, u.id, int64(len(u.data)), int64(g.rng.IntN(len(u.data)+2)), []byte("xyz"))
	}
}

func (g *gen) chunk(sid string, u *gUpload) *fsmpb.Command {
	n := min(1+g.rng.IntN(8), len(u.data)-u.off)
	c := cmdChunk(sid, u.id, int64(len(u.data)), int64(u.off), u.data[u.off:u.off+n])
	u.off += n
	return c
}

func (g *gen) commit(sid string, u *gUpload) *fsmpb.Command {
	var level int64
	if g.rng.IntN(3) == 0 {
		level = int64(g.rng.IntN(8))
	}
	data := u.data
	if g.rng.IntN(20) == 0 {
		data = []byte("wrong")
	}
	// The expiry is now + a TTL of up to 5 s, so that expires sent above
	// sometimes match.
	c := cmdCommit(g.key(), sid, u.id, g.rng.IntN(2) == 0, level, data, g.now+int64(g.rng.IntN(5))*1000)
	c.GetSharedDataCommit().Size = int64(len(u.data))
	return c
}

// mShared is the model of a session's shared data.
type mShared struct {
	last    int64
	levels  []int64
	expires int64
	up      *mUp
}

type mUp struct {
	id   string
	size int64
	data []byte
}

// applyShared advances the model for a shared data command and returns the
// error kind it expects.
func (m *model) applyShared(c *fsmpb.Command) (string, error) {
	switch b := c.GetCmd().(type) {
	case *fsmpb.Command_SharedDataChunk:
		ch := b.SharedDataChunk
		s, err := m.open(ch.GetSessionId())
		if err != nil {
			return "", err
		}
		size, off, n := ch.GetSize(), ch.GetOffset(), int64(len(ch.GetData()))
		switch {
		case ch.GetUploadId() == "", size < 0, size > MaxSharedDataSize, n > MaxSharedChunk, off < 0, off > size-n:
			return "", ErrInvalid
		}
		if off == 0 {
			s.shared.up = &mUp{id: ch.GetUploadId(), size: size}
		}
		u := s.shared.up
		switch {
		case u == nil || u.id != ch.GetUploadId():
			return "", ErrUploadGone
		case u.size != size, off != int64(len(u.data)):
			return "", ErrInvalid
		}
		u.data = append(u.data, ch.GetData()...)
	case *fsmpb.Command_SharedDataCommit:
		cm := b.SharedDataCommit
		id := cm.GetSessionId()
		s, err := m.open(id)
		if err != nil {
			return id, err
		}
		sh := &s.shared
		u := sh.up
		if u != nil && u.id == cm.GetUploadId() {
			sh.up = nil
		} else {
			u = nil
		}
		size := cm.GetSize()
		var data []byte
		if u != nil {
			data = u.data
		}
		sum := sha256.Sum256(data)
		switch {
		case size < 0:
			return id, ErrInvalid
		case u == nil && size > 0:
			return id, ErrUploadGone
		case u != nil && (u.size != size || int64(len(u.data)) != size):
			return id, ErrInvalid
		case len(cm.GetSha256()) != 0 && string(cm.GetSha256()) != string(sum[:]):
			return id, ErrInvalid
		case cm.GetSet() && len(sh.levels) > 0:
			return id, ErrSharedDataExists
		case !cm.GetSet() && len(sh.levels) == 0:
			return id, ErrSharedDataNotFound
		}
		level := cm.GetLevel()
		switch {
		case level < 0:
			return id, ErrInvalid
		case level == 0:
			level = sh.last + 1
		case level <= sh.last:
			return id, ErrInvalid
		}
		sh.levels = append(sh.levels, level)
		if len(sh.levels) > int(cm.GetKeepLevels()) {
			sh.levels = sh.levels[1:]
		}
		sh.last, sh.expires = level, cm.GetExpiresUnixMs()
		m.wantLevel = level
		return id, nil
	case *fsmpb.Command_SharedDataDelete:
		id := b.SharedDataDelete.GetSessionId()
		s := m.sessions[id]
		if s == nil {
			return id, ErrSessionNotFound
		}
		m.want.SharedDeleted = len(s.shared.levels) > 0 || s.shared.up != nil
		s.shared = mShared{last: s.shared.last}
		return id, nil
	case *fsmpb.Command_SharedDataExpire:
		s := m.sessions[b.SharedDataExpire.GetSessionId()]
		if s == nil {
			return "", ErrSessionNotFound
		}
		if sh := &s.shared; len(sh.levels) > 0 && sh.expires != 0 && sh.expires == b.SharedDataExpire.GetExpiresUnixMs() {
			sh.levels, sh.expires = nil, 0
			m.want.SharedDeleted = true
		}
	case *fsmpb.Command_SharedDataAbort:
		s := m.sessions[b.SharedDataAbort.GetSessionId()]
		if s == nil {
			return "", ErrSessionNotFound
		}
		if s.shared.up != nil && s.shared.up.id == b.SharedDataAbort.GetUploadId() {
			s.shared.up = nil
			m.want.SharedDeleted = true
		}
	}
	return "", nil
}

// checkShared compares what f serves with the model's levels.
func (m *model) checkShared(f *FSM) error {
	for id, s := range m.sessions {
		sh := &s.shared
		for _, lvl := range []int64{0, sh.last - 2, sh.last - 1, sh.last, sh.last + 1} {
			if lvl < 0 {
				continue
			}
			l, err := f.SharedData(id, lvl)
			latest := int64(0)
			if len(sh.levels) > 0 {
				latest = sh.levels[len(sh.levels)-1]
			}
			kept := slices.Contains(sh.levels, lvl) || (lvl == 0 && latest > 0)
			switch {
			case kept && (err != nil || (lvl != 0 && l.Level != lvl) || (lvl == 0 && l.Level != latest)):
				return fmt.Errorf("session %q level %d: got %d, %v; model keeps %v", id, lvl, l.Level, err, sh.levels)
			case !kept && err == nil:
				return fmt.Errorf("session %q level %d served; model keeps %v", id, lvl, sh.levels)
			}
		}
	}
	return nil
}
