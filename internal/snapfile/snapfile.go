// Package snapfile is the format of the file `gridctl cluster snapshot
// save` writes and `gridd restore` reads: one line naming the format, one
// line of JSON metadata, then the Raft snapshot's bytes as the leader
// stored them. The metadata carries the data's size and SHA-256, so a
// truncated or altered file is refused before anything is restored.
package snapfile

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// magic is the first line of every snapshot file.
const magic = "gridd-snapshot v1\n"

// Server is one member of the Raft configuration at the snapshot.
type Server struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Suffrage string `json:"suffrage"`
}

// Meta describes the snapshot in a file.
type Meta struct {
	Index              uint64   `json:"index"`
	Term               uint64   `json:"term"`
	Configuration      []Server `json:"configuration"`
	ConfigurationIndex uint64   `json:"configuration_index"`
	Size               int64    `json:"size"`
	SHA256             string   `json:"sha256"`
	NodeID             string   `json:"node_id"`
	CreatedUnixMs      int64    `json:"created_unix_ms"`
}

// WriteHeader writes the format line and m; the m.Size bytes of data
// follow.
func WriteHeader(w io.Writer, m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", magic, b)
	return err
}

// Read reads the header of a snapshot file and returns its metadata and a
// reader of the data. The reader fails with an error at its end if the
// data is shorter or longer than the header says or its SHA-256 differs:
// read it to EOF before trusting what it gave.
func Read(r io.Reader) (Meta, io.Reader, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil || line != magic {
		return Meta{}, nil, fmt.Errorf("not a gridd snapshot file (it does not start with %q)", strings.TrimSpace(magic))
	}
	line, err = br.ReadString('\n')
	if err != nil {
		return Meta{}, nil, fmt.Errorf("snapshot file: truncated metadata: %w", err)
	}
	var m Meta
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return Meta{}, nil, fmt.Errorf("snapshot file: bad metadata: %w", err)
	}
	if m.Index == 0 || m.Size <= 0 || len(m.SHA256) != 2*sha256.Size {
		return Meta{}, nil, fmt.Errorf("snapshot file: incomplete metadata (index %d, size %d, sha256 %q)", m.Index, m.Size, m.SHA256)
	}
	return m, &checked{r: br, left: m.Size, want: m.SHA256, h: sha256.New()}, nil
}

// checked passes the data through and checks its size and digest at EOF.
type checked struct {
	r    io.Reader
	left int64
	want string
	h    hash.Hash
}

func (c *checked) Read(p []byte) (int, error) {
	if c.left == 0 {
		var one [1]byte
		if n, _ := io.ReadFull(c.r, one[:]); n > 0 {
			return 0, errors.New("snapshot file: more data than its metadata says (corrupt or concatenated file)")
		}
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			return 0, fmt.Errorf("snapshot file: sha256 %s, want %s: the file is corrupt", got, c.want)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	c.h.Write(p[:n])
	if err == io.EOF && c.left > 0 {
		return n, fmt.Errorf("snapshot file: truncated: %d bytes of data missing", c.left)
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}
