package cache

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// PeersConfig says how a node cache finds the others.
type PeersConfig struct {
	// Name is this node cache's member name, unique among the peers and
	// best kept across restarts (it places keys). Default: hostname and the
	// gRPC address.
	Name string
	// BindAddr is the memberlist address (TCP and UDP), host:port; port 0
	// picks a free one.
	BindAddr string
	// AdvertiseAddr is the memberlist address peers reach this one at;
	// default: memberlist's choice (a private IP when BindAddr is a
	// wildcard).
	AdvertiseAddr string
	// GRPCAddr is where peers fetch from this node cache. A wildcard or
	// empty host means "my memberlist IP".
	GRPCAddr string
	// Join lists memberlist addresses of some peers; none: start alone (the
	// others may join this one).
	Join []string
	// Local selects short probe and gossip intervals, for one machine or a
	// test; the default is memberlist's LAN profile.
	Local bool
	// SecretKey, if set, encrypts and authenticates gossip (AES-GCM; 16, 24
	// or 32 bytes, the same on every peer): without it anyone who reaches
	// the memberlist port can join and steer fetches.
	SecretKey []byte
	Logger    *slog.Logger
}

// Peers is this node cache's view of the others, kept by hashicorp/memberlist
// (gossip, failure detection). Each member advertises its gRPC address in
// its metadata.
type Peers struct {
	ml   *memberlist.Memberlist
	self string
	log  *slog.Logger
}

// StartPeers joins (or starts) the memberlist group. It fails when none of
// cfg.Join answers: a node cache that believes it is alone would read every
// level from the central cache without anyone noticing.
func StartPeers(cfg PeersConfig) (*Peers, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lg := cfg.Logger.With("component", "nodecache.peers")
	mc := memberlist.DefaultLANConfig()
	if cfg.Local {
		mc = memberlist.DefaultLocalConfig()
		// Fast gossip spreads joins at once; probes stay patient, because
		// a busy machine must not declare its own processes dead (the owner
		// of keys would move back and forth).
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 300 * time.Millisecond
		mc.GossipInterval = 20 * time.Millisecond
		mc.PushPullInterval = 2 * time.Second
		mc.SuspicionMult = 4
	}
	host, port, err := splitHostPort(cfg.BindAddr, "memberlist bind address")
	if err != nil {
		return nil, err
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if mc.BindAddr == "" {
		mc.BindAddr = "0.0.0.0"
	}
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr, "memberlist advertise address")
		if err != nil {
			return nil, err
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if cfg.GRPCAddr == "" {
		return nil, fmt.Errorf("peers: the gRPC address peers fetch from is empty")
	}
	if len(cfg.SecretKey) > 0 {
		if n := len(cfg.SecretKey); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("peers: the gossip key is %d bytes; want 16, 24 or 32 (AES-128, -192 or -256)", n)
		}
		mc.SecretKey = cfg.SecretKey
	}
	mc.Name = cfg.Name
	if mc.Name == "" {
		h, _ := os.Hostname()
		mc.Name = h + "/" + cfg.GRPCAddr
	}
	mc.Delegate = metaDelegate(advertisedGRPC(cfg.GRPCAddr))
	mc.Logger = log.New(memberlistLog{lg}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start memberlist on %s: %w", cfg.BindAddr, err)
	}
	p := &Peers{ml: ml, self: mc.Name, log: lg}
	if len(cfg.Join) > 0 {
		n, err := ml.Join(cfg.Join)
		if n == 0 {
			_ = ml.Shutdown()
			return nil, fmt.Errorf("join node cache peers %s: %w", strings.Join(cfg.Join, ","), err)
		}
		lg.Info("joined node cache peers", "contacted", n, "members", ml.NumMembers())
	}
	return p, nil
}

// advertisedGRPC keeps a concrete host and drops a wildcard one, which peers
// then replace with this member's memberlist IP.
func advertisedGRPC(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return ":" + port
	}
	return addr
}

func splitHostPort(addr, what string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: want host:port (like :7946): %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: port %q is not a number from 0 to 65535", what, addr, p)
	}
	return host, port, nil
}

// Addr is the memberlist address this member listens on (with the port
// picked when the bind port was 0), for others to join.
func (p *Peers) Addr() string {
	n := p.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Name is this member's name.
func (p *Peers) Name() string { return p.self }

// member is a live peer as the owner choice sees it.
type member struct {
	name string
	grpc string // dialable gRPC address
}

// Members lists the live members, this one included.
func (p *Peers) Members() []member {
	nodes := p.ml.Members()
	out := make([]member, 0, len(nodes))
	for _, n := range nodes {
		addr := string(n.Meta)
		if strings.HasPrefix(addr, ":") {
			addr = net.JoinHostPort(n.Addr.String(), addr[1:])
		}
		out = append(out, member{name: n.Name, grpc: addr})
	}
	return out
}

// owner picks the member responsible for fetching k from the central cache:
// rendezvous (highest random weight) hashing over the live members. Every
// member computes the same owner from the same member list, and a member
// joining or leaving moves only the keys it wins or held.
func (p *Peers) owner(k key) (m member, self bool) {
	m = ownerOf(p.Members(), k)
	return m, m.name == p.self
}

func ownerOf(members []member, k key) (m member) {
	var best uint64
	for _, c := range members {
		if s := hrwScore(c.name, k); m.name == "" || s > best || s == best && c.name < m.name {
			m, best = c, s
		}
	}
	return m
}

func hrwScore(member string, k key) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, member)
	_, _ = h.Write([]byte{0})
	_, _ = io.WriteString(h, k.session)
	var lv [8]byte
	binary.BigEndian.PutUint64(lv[:], uint64(k.level))
	_, _ = h.Write(lv[:])
	// FNV mixes the last bytes poorly; a splitmix64 finalizer spreads
	// similar keys over all members.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Close leaves the group (so peers stop sending keys here at once instead
// of after failure detection) and stops memberlist.
func (p *Peers) Close() error {
	if err := p.ml.Leave(time.Second); err != nil {
		p.log.Debug("leave node cache peers", "err", err)
	}
	return p.ml.Shutdown()
}

// metaDelegate advertises the gRPC address in the member's metadata.
type metaDelegate string

func (d metaDelegate) NodeMeta(limit int) []byte {
	if len(d) > limit {
		return nil
	}
	return []byte(d)
}
func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

// memberlistLog turns memberlist's "[LEVEL] memberlist: ..." lines into
// slog records at the matching level.
type memberlistLog struct{ log *slog.Logger }

func (w memberlistLog) Write(b []byte) (int, error) {
	line := strings.TrimSpace(string(b))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
		"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			line, level = strings.TrimSpace(rest), l
			break
		}
	}
	w.log.Log(context.Background(), level, strings.TrimPrefix(line, "memberlist: "))
	return len(b), nil
}
