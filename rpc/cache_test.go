package rpc

import (
	"errors"
	"testing"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/rpc/griddpb"
)

// FuzzSharedUpload drives the upload validators with arbitrary headers and
// chunk sequences, as the Cache service applies them: they never panic,
// every refusal is an InvalidArgument, and a stream they accept carries
// exactly the declared bytes in chunks of at most 1 MiB.
func FuzzSharedUpload(f *testing.F) {
	f.Add("s", int64(0), int64(0), int64(10), 0, "", []byte{0, 4, 0, 6}, -1)
	f.Add("s", int64(3), int64(1000), int64(3<<20), 32, "req", []byte{0x80, 0, 0x80, 0, 0x80, 0}, 1)
	f.Add("", int64(-1), int64(-5), int64(-1), 7, "\xff", []byte{}, 0)
	f.Add("s", int64(1), int64(1), int64(1<<20+1), 0, "r", []byte{0xff, 0xff}, -1)
	backing := make([]byte, 2<<20+64)
	lim := CacheLimits{MaxBytes: 4 << 20}
	f.Fuzz(func(t *testing.T, session string, level, ttl, size int64, shaLen int, reqID string, lens []byte, headerAt int) {
		if shaLen < 0 || shaLen > 64 {
			shaLen = 0
		}
		h := &griddpb.SharedDataHeader{SessionId: session, UpdateLevel: level, TtlMs: ttl, Size: size,
			Sha256: make([]byte, shaLen), RequestId: reqID}
		err := ValidateSharedHeader(lim, h)
		if err != nil {
			if !errors.Is(err, errInvalid) {
				t.Fatalf("header refused with %v, not an invalid argument", err)
			}
			return
		}
		if size < 0 || size > lim.MaxBytes || level < 0 || ttl < 0 || session == "" {
			t.Fatalf("header accepted: %v", h)
		}
		var received int64
		for i := 0; i+1 < len(lens); i += 2 {
			n := (int(lens[i])<<8 | int(lens[i+1])) * 40 // up to ~2.5 MiB
			n = min(n, len(backing))
			m := &griddpb.SharedDataChunk{Data: backing[:n]}
			if i/2 == headerAt {
				m.Header = h
			}
			if err := ValidateSharedChunk(m, i == 0, received, size); err != nil {
				if !errors.Is(err, errInvalid) {
					t.Fatalf("chunk refused with %v, not an invalid argument", err)
				}
				return
			}
			if n > fsm.MaxSharedChunk || (i > 0 && m.Header != nil) {
				t.Fatalf("chunk %d of %d bytes (header %v) accepted", i/2, n, m.Header != nil)
			}
			received += int64(n)
			if received > size {
				t.Fatalf("%d bytes accepted for a declared size of %d", received, size)
			}
		}
	})
}
