package snapfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
)

func file(t *testing.T, data []byte, mutate func(m *Meta)) []byte {
	t.Helper()
	sum := sha256.Sum256(data)
	m := Meta{Index: 7, Term: 2, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Configuration: []Server{{ID: "n1", RaftAddr: "a:1", Suffrage: "voter"}}}
	if mutate != nil {
		mutate(&m)
	}
	var b bytes.Buffer
	if err := WriteHeader(&b, m); err != nil {
		t.Fatal(err)
	}
	b.Write(data)
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := bytes.Repeat([]byte("state"), 1000)
	m, r, err := Read(bytes.NewReader(file(t, data, nil)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || m.Index != 7 || m.Term != 2 || m.Configuration[0].ID != "n1" {
		t.Fatalf("round trip: meta %+v, %d bytes", m, len(got))
	}
}

func TestDamageIsRefused(t *testing.T) {
	data := bytes.Repeat([]byte("state"), 1000)
	good := file(t, data, nil)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-10] ^= 1
	cases := map[string][]byte{
		"not a snapshot": []byte("hello\n"),
		"empty":          nil,
		"bad json":       []byte(magic + "{\n"),
		"no digest":      file(t, data, func(m *Meta) { m.SHA256 = "" }),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(bytes.Clone(good), 'x'),
		"flipped bit":    flipped,
	}
	for name, b := range cases {
		_, r, err := Read(bytes.NewReader(b))
		if err == nil {
			_, err = io.ReadAll(r)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "snapshot") {
			t.Errorf("%s: error %q does not say what is wrong", name, err)
		}
	}
}
