package cache

import (
	"container/list"
	"time"
)

// key names one level of one session's shared data. Levels are immutable
// once written, so a cached (session, level) never goes stale; only its
// expiry and the cache's size bound remove it.
type key struct {
	session string
	level   int64
}

// entry is one cached level: the payload and the header fields a download
// repeats (size, digest, expiry as the central cache stamped it).
type entry struct {
	key
	data    []byte
	sha256  []byte
	expires int64 // unix ms, the central entry's; 0: never
}

// entryOverhead approximates the memory of an entry beyond its payload
// (list element, map slot, header fields), so many tiny levels cannot
// overrun the byte bound.
const entryOverhead = 128

func (e *entry) cost() int64 { return int64(len(e.data)+len(e.session)+len(e.sha256)) + entryOverhead }

func (e *entry) expired(now time.Time) bool {
	return e.expires != 0 && now.UnixMilli() >= e.expires
}

// lru bounds the cached bytes, evicting the least recently used level
// first. It is not safe for concurrent use: NodeCache holds its lock.
type lru struct {
	max   int64
	used  int64
	ll    *list.List // front: most recently used; values are *entry
	items map[key]*list.Element
	// onEvict counts entries dropped for room (not for expiry or deletion).
	onEvict func(*entry)
}

func newLRU(maxBytes int64, onEvict func(*entry)) *lru {
	if onEvict == nil {
		onEvict = func(*entry) {}
	}
	return &lru{max: maxBytes, ll: list.New(), items: make(map[key]*list.Element), onEvict: onEvict}
}

// fits reports whether an entry of that cost can be kept at all; larger
// ones are streamed through without being cached.
func (c *lru) fits(cost int64) bool { return cost <= c.max }

// get returns the live entry for k and marks it used; an expired entry is
// dropped and reported as absent.
func (c *lru) get(k key, now time.Time) *entry {
	el, ok := c.items[k]
	if !ok {
		return nil
	}
	e := el.Value.(*entry)
	if e.expired(now) {
		c.remove(el)
		return nil
	}
	c.ll.MoveToFront(el)
	return e
}

// add keeps e, evicting least recently used entries for room. It reports
// false (and keeps nothing) when e alone is larger than the cache or
// already expired. A level already cached is left as it is: its bytes
// cannot differ.
func (c *lru) add(e *entry, now time.Time) bool {
	if e.expired(now) || !c.fits(e.cost()) {
		return false
	}
	if el, ok := c.items[e.key]; ok {
		c.ll.MoveToFront(el)
		old := el.Value.(*entry)
		if e.expires > old.expires {
			old.expires = e.expires
		}
		return true
	}
	for c.used+e.cost() > c.max {
		back := c.ll.Back()
		c.remove(back)
		c.onEvict(back.Value.(*entry))
	}
	c.items[e.key] = c.ll.PushFront(e)
	c.used += e.cost()
	return true
}

// dropSession removes every level of a session, for a session the central
// cache no longer knows.
func (c *lru) dropSession(session string) int {
	n := 0
	for el := c.ll.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*entry).session == session {
			c.remove(el)
			n++
		}
		el = next
	}
	return n
}

// sweep drops every expired entry, so the memory of levels nobody asks for
// again is returned without waiting for eviction.
func (c *lru) sweep(now time.Time) int {
	n := 0
	for el := c.ll.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*entry).expired(now) {
			c.remove(el)
			n++
		}
		el = next
	}
	return n
}

func (c *lru) remove(el *list.Element) {
	e := c.ll.Remove(el).(*entry)
	delete(c.items, e.key)
	c.used -= e.cost()
}

func (c *lru) len() int { return c.ll.Len() }
