// Package auth checks API keys: the keys file (bcrypt hashes, a role and
// the apps each key may use), a bounded cache of verdicts so bcrypt runs
// once per key and not once per call, and the gRPC interceptors that put
// the caller's Identity in the context for the services to check apps.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

// Role says which methods a key may call (see policy.go).
type Role string

// The roles of a key.
const (
	// RoleClient: sessions, client streams, tasks, dead letters, workers'
	// listing and shared data, all limited to the key's apps.
	RoleClient Role = "client"
	// RoleWorker: WorkerUpdate, WorkerStream and GetSharedData, for every
	// app (apps must be ["*"]).
	RoleWorker Role = "worker"
	// RoleAdmin: everything, every app, Cluster writes included.
	RoleAdmin Role = "admin"
	// RoleNode: Cluster.Join only; what gridd nodes use to join a cluster
	// (--join-api-key) without holding an admin key.
	RoleNode Role = "node"
)

// AllApps in a key's apps lets it use every app.
const AllApps = "*"

// MDAPIKey is the metadata header carrying the key.
const MDAPIKey = "api_key"

// Key is one entry of the keys file.
type Key struct {
	// Name identifies the key in logs and errors; never the key itself.
	Name string `yaml:"name"`
	// Hash is the bcrypt hash of the key (gridctl keys hash).
	Hash string `yaml:"hash"`
	Role Role   `yaml:"role"`
	// Apps the key may use; ["*"] for all. Ignored for admin and node keys.
	Apps []string `yaml:"apps"`
}

// Identity is who a verified key belongs to.
type Identity struct {
	Name string
	Role Role
	apps []string
	all  bool
}

// AllowsApp reports whether the identity may see and touch sessions of app.
func (id *Identity) AllowsApp(app string) bool {
	if id == nil || id.all || id.Role == RoleAdmin {
		return true
	}
	return slices.Contains(id.apps, app)
}

// Apps returns the apps of the identity, or nil when it may use all.
func (id *Identity) Apps() []string {
	if id.all || id.Role == RoleAdmin {
		return nil
	}
	return slices.Clone(id.apps)
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the caller's identity, or nil when the cluster runs
// without keys: nil allows every app (Identity.AllowsApp).
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}

// LoadFile reads and checks a keys file (YAML: a list of Key, or a map
// with a "keys" list).
func LoadFile(path string) ([]Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the API keys file: %w", err)
	}
	keys, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("API keys file %s: %w", path, err)
	}
	return keys, nil
}

// Parse decodes and checks the keys file's content.
func Parse(data []byte) ([]Key, error) {
	var keys []Key
	if err := yaml.Unmarshal(data, &keys); err != nil {
		var wrapped struct {
			Keys []Key `yaml:"keys"`
		}
		if err2 := yaml.Unmarshal(data, &wrapped); err2 != nil {
			return nil, fmt.Errorf("not a YAML list of {name, hash, role, apps}: %w", err)
		}
		keys = wrapped.Keys
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys: list at least one {name, hash, role, apps}")
	}
	return keys, Validate(keys)
}

// Validate checks every key of a configuration.
func Validate(keys []Key) error {
	names := map[string]bool{}
	for i, k := range keys {
		where := fmt.Sprintf("key #%d (%q)", i+1, k.Name)
		if k.Name == "" {
			return fmt.Errorf("key #%d: name is empty", i+1)
		}
		if names[k.Name] {
			return fmt.Errorf("%s: name used twice", where)
		}
		names[k.Name] = true
		if _, err := bcrypt.Cost([]byte(k.Hash)); err != nil {
			return fmt.Errorf("%s: hash is not a bcrypt hash (make one with gridctl keys hash): %v", where, err)
		}
		switch k.Role {
		case RoleClient, RoleWorker:
			if len(k.Apps) == 0 {
				return fmt.Errorf("%s: apps is empty: list the apps the key may use, or [\"*\"] for all", where)
			}
			for _, a := range k.Apps {
				if a == "" {
					return fmt.Errorf("%s: an app name is empty", where)
				}
			}
			// The scheduler places any worker on any session, so a worker
			// limited to some apps would be bound to sessions it may not
			// serve.
			if k.Role == RoleWorker && !slices.Equal(k.Apps, []string{AllApps}) {
				return fmt.Errorf("%s: worker keys serve every app (the scheduler does not place workers by app yet): set apps: [\"*\"]", where)
			}
		case RoleAdmin, RoleNode:
		default:
			return fmt.Errorf("%s: role %q is not one of client, worker, admin, node", where, k.Role)
		}
	}
	return nil
}

// Errors of Verify.
var (
	ErrMissingKey = errors.New("missing API key")
	ErrUnknownKey = errors.New("unknown API key")
)

// Options tune the verdict cache.
type Options struct {
	// TTL bounds how long a verdict is reused: a key removed by a reload
	// stops working at once, since a reload drops the cache, but the TTL
	// also bounds how long a verdict outlives anything else. Default 1m.
	TTL time.Duration
	// MaxEntries bounds the cache; default 10,000 distinct key strings.
	MaxEntries int
	// Now is the clock, for tests; default time.Now.
	Now func() time.Time
}

// Authenticator verifies keys against a configuration.
type Authenticator struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	keys  []Key
	gen   uint64 // bumped by Reload, so a verdict on old keys is not cached
	cache map[[32]byte]verdict
}

type verdict struct {
	id      *Identity // nil: the key matched no entry
	expires time.Time
}

// New returns an Authenticator for keys (which Validate must accept).
func New(keys []Key, opts Options) (*Authenticator, error) {
	if err := Validate(keys); err != nil {
		return nil, err
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Authenticator{ttl: opts.TTL, max: opts.MaxEntries, now: opts.Now,
		keys: slices.Clone(keys), cache: map[[32]byte]verdict{}}, nil
}

// Reload replaces the keys and forgets every cached verdict, so a revoked
// key is refused from the next call on.
func (a *Authenticator) Reload(keys []Key) error {
	if err := Validate(keys); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keys = slices.Clone(keys)
	a.gen++
	clear(a.cache)
	return nil
}

// Verify returns the identity of key. bcrypt runs only on a cache miss;
// wrong keys are cached too, so retrying one does not burn CPU again.
func (a *Authenticator) Verify(key string) (*Identity, error) {
	if key == "" {
		return nil, ErrMissingKey
	}
	// The cache is indexed by a digest, so the key strings themselves are
	// not kept in memory longer than a call.
	sum := sha256.Sum256([]byte(key))
	now := a.now()
	a.mu.Lock()
	v, ok := a.cache[sum]
	keys, gen := a.keys, a.gen
	a.mu.Unlock()
	if !ok || now.After(v.expires) {
		// bcrypt outside the lock: it takes tens of milliseconds.
		v = verdict{id: match(keys, key), expires: now.Add(a.ttl)}
		a.mu.Lock()
		if a.gen == gen {
			a.store(sum, v, now)
		}
		a.mu.Unlock()
	}
	if v.id == nil {
		return nil, ErrUnknownKey
	}
	return v.id, nil
}

// store adds a verdict, evicting expired entries and then arbitrary ones
// when the cache is full. Called with a.mu held.
func (a *Authenticator) store(sum [32]byte, v verdict, now time.Time) {
	if len(a.cache) >= a.max {
		for k, old := range a.cache {
			if now.After(old.expires) {
				delete(a.cache, k)
			}
		}
		for k := range a.cache {
			if len(a.cache) < a.max {
				break
			}
			delete(a.cache, k)
		}
	}
	a.cache[sum] = v
}

func match(keys []Key, key string) *Identity {
	for _, k := range keys {
		if bcrypt.CompareHashAndPassword([]byte(k.Hash), []byte(key)) == nil {
			return &Identity{Name: k.Name, Role: k.Role, apps: slices.Clone(k.Apps),
				all: slices.Contains(k.Apps, AllApps)}
		}
	}
	return nil
}

// Hash returns the bcrypt hash of a new key, for the keys file.
func Hash(key string) (string, error) {
	key = strings.TrimRight(key, "\r\n")
	if len(key) < 16 {
		return "", errors.New("the key is shorter than 16 characters: use a long random string, for example `openssl rand -hex 32`")
	}
	if len(key) > 72 {
		return "", errors.New("the key is longer than 72 bytes, the most bcrypt uses: use 16 to 72 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}
