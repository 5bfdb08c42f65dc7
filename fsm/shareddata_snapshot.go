package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// sharedSnap is a session's shared data at capture time. Levels are
// immutable and an upload's received prefix never changes (see
// sharedUpload), so the capture shares their bytes instead of copying.
type sharedSnap struct {
	last    int64
	expires int64
	levels  []*sharedLevel
	upload  *sharedUpload // a copy of the header; buf cut at capture
}

func (sh *sharedData) capture() sharedSnap {
	out := sharedSnap{last: sh.last, expires: sh.expires, levels: sh.levels}
	if u := sh.upload; u != nil {
		out.upload = &sharedUpload{id: u.id, size: u.size, buf: u.buf[:len(u.buf):len(u.buf)], lastChunk: u.lastChunk}
	}
	return out
}

func (ss *sharedSnap) empty() bool {
	return ss.last == 0 && len(ss.levels) == 0 && ss.upload == nil
}

// writeShared writes every session's shared data after the members: a
// SharedDataRecord, then each blob followed by its bytes in records of at
// most MaxSharedChunk, so no record holds a whole payload.
func (s *Snapshot) writeShared(rw *recordWriter) {
	br := &fsmpb.SharedBytesRecord{}
	bytesRec := &fsmpb.Record{Rec: &fsmpb.Record_SharedBytes{SharedBytes: br}}
	writeBytes := func(b []byte) {
		for len(b) > 0 {
			n := min(len(b), MaxSharedChunk)
			br.Data = b[:n]
			rw.write(bytesRec)
			b = b[n:]
		}
	}
	for i := range s.sessions {
		ss := &s.sessions[i]
		sh := &ss.shared
		if sh.empty() {
			continue
		}
		rw.write(&fsmpb.Record{Rec: &fsmpb.Record_SharedData{SharedData: &fsmpb.SharedDataRecord{
			SessionId: ss.meta.id, LastLevel: sh.last, ExpiresUnixMs: sh.expires,
		}}})
		for _, l := range sh.levels {
			rw.write(&fsmpb.Record{Rec: &fsmpb.Record_SharedBlob{SharedBlob: &fsmpb.SharedBlobRecord{
				Level: l.level, Size: int64(len(l.data)), Length: int64(len(l.data)), Sha256: l.sum[:],
			}}})
			writeBytes(l.data)
		}
		if u := sh.upload; u != nil {
			rw.write(&fsmpb.Record{Rec: &fsmpb.Record_SharedBlob{SharedBlob: &fsmpb.SharedBlobRecord{
				Size: u.size, Length: int64(len(u.buf)), UploadId: u.id, LastChunkUnixMs: u.lastChunk,
			}}})
			writeBytes(u.buf)
		}
	}
}

// sharedBuilder restores shared data records in order.
type sharedBuilder struct {
	lastSession string
	cur         *session
	level       *sharedLevel  // the level being filled, or
	upload      *sharedUpload // the upload being filled
	want        int64         // bytes the blob being filled announced
}

func (b *builder) sharedData(r *fsmpb.SharedDataRecord) error {
	if err := b.sharedDone(); err != nil {
		return err
	}
	id := r.GetSessionId()
	s, ok := b.st.sessions[id]
	switch {
	case !ok:
		return fmt.Errorf("shared data of unknown session %q", id)
	case s.closed:
		return fmt.Errorf("shared data of closed session %q", id)
	case id <= b.shared.lastSession:
		return fmt.Errorf("shared data of session %q repeated or out of order", id)
	case r.GetLastLevel() < 0 || r.GetExpiresUnixMs() < 0:
		return fmt.Errorf("shared data of session %q: last level %d, expiry %d", id, r.GetLastLevel(), r.GetExpiresUnixMs())
	}
	b.shared.lastSession = id
	b.shared.cur = s
	s.shared = sharedData{last: r.GetLastLevel(), expires: r.GetExpiresUnixMs()}
	return nil
}

func (b *builder) sharedBlob(r *fsmpb.SharedBlobRecord) error {
	if err := b.sharedDone(); err != nil {
		return err
	}
	s := b.shared.cur
	if s == nil {
		return errors.New("shared data blob before its session's shared data record")
	}
	sh := &s.shared
	size, n := r.GetSize(), r.GetLength()
	if size < 0 || size > MaxSharedDataSize || n < 0 || n > size {
		return fmt.Errorf("session %q: shared data blob of %d bytes out of a size of %d", s.id, n, size)
	}
	if sh.upload != nil {
		return fmt.Errorf("session %q: shared data blob after the upload", s.id)
	}
	if r.GetLevel() == 0 {
		if r.GetUploadId() == "" {
			return fmt.Errorf("session %q: upload without an id", s.id)
		}
		sh.upload = &sharedUpload{id: r.GetUploadId(), size: size, buf: make([]byte, 0, size),
			hash: sha256.New(), lastChunk: r.GetLastChunkUnixMs()}
		b.shared.upload, b.shared.want = sh.upload, n
		return nil
	}
	lvl := r.GetLevel()
	switch {
	case lvl < 0 || lvl > sh.last:
		return fmt.Errorf("session %q: level %d outside 1..%d", s.id, lvl, sh.last)
	case len(sh.levels) > 0 && lvl <= sh.levels[len(sh.levels)-1].level:
		return fmt.Errorf("session %q: level %d repeated or out of order", s.id, lvl)
	case n != size:
		return fmt.Errorf("session %q: level %d carries %d of %d bytes", s.id, lvl, n, size)
	case len(r.GetSha256()) != sha256.Size:
		return fmt.Errorf("session %q: level %d: sha256 of %d bytes", s.id, lvl, len(r.GetSha256()))
	}
	l := &sharedLevel{level: lvl, data: make([]byte, 0, size)}
	copy(l.sum[:], r.GetSha256())
	sh.levels = append(sh.levels, l)
	b.shared.level, b.shared.want = l, n
	return nil
}

func (b *builder) sharedBytes(r *fsmpb.SharedBytesRecord) error {
	data := r.GetData()
	var have int
	switch {
	case b.shared.level != nil:
		have = len(b.shared.level.data)
	case b.shared.upload != nil:
		have = len(b.shared.upload.buf)
	default:
		return errors.New("shared data bytes outside a blob")
	}
	if len(data) > MaxSharedChunk || int64(have+len(data)) > b.shared.want {
		return fmt.Errorf("shared data bytes: %d more bytes after %d overrun the blob's %d",
			len(data), have, b.shared.want)
	}
	if l := b.shared.level; l != nil {
		l.data = append(l.data, data...)
	} else {
		u := b.shared.upload
		u.buf = append(u.buf, data...)
		u.hash.Write(data)
	}
	return nil
}

// sharedDone checks that the blob being filled got all its bytes: a level
// must also hash to its recorded sum.
func (b *builder) sharedDone() error {
	sb := &b.shared
	defer func() { sb.level, sb.upload, sb.want = nil, nil, 0 }()
	switch {
	case sb.level != nil:
		l := sb.level
		if int64(len(l.data)) != sb.want {
			return fmt.Errorf("session %q: level %d has %d of %d bytes", sb.cur.id, l.level, len(l.data), sb.want)
		}
		if sum := sha256.Sum256(l.data); !bytes.Equal(sum[:], l.sum[:]) {
			return fmt.Errorf("session %q: level %d does not hash to its recorded sha256", sb.cur.id, l.level)
		}
	case sb.upload != nil:
		if int64(len(sb.upload.buf)) != sb.want {
			return fmt.Errorf("session %q: upload has %d of %d bytes", sb.cur.id, len(sb.upload.buf), sb.want)
		}
	}
	return nil
}
