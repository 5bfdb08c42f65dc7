package cache

import (
	"testing"
	"time"
)

func ent(session string, level int64, size int, expires int64) *entry {
	return &entry{key: key{session, level}, data: make([]byte, size), expires: expires}
}

func TestLRUEvictsLeastRecentlyUsedByBytes(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	evicted := 0
	// Room for exactly three 1000-byte levels of session "s".
	c := newLRU(3*ent("s", 1, 1000, 0).cost(), func(*entry) { evicted++ })
	for lv := int64(1); lv <= 3; lv++ {
		if !c.add(ent("s", lv, 1000, 0), now) {
			t.Fatalf("level %d not kept", lv)
		}
	}
	if c.get(key{"s", 1}, now) == nil { // level 1 is now the most recent
		t.Fatal("level 1 missing")
	}
	c.add(ent("s", 4, 1000, 0), now)
	if evicted != 1 || c.get(key{"s", 2}, now) != nil {
		t.Fatalf("evicted %d, level 2 present=%v: want level 2 (least recently used) evicted", evicted, c.get(key{"s", 2}, now) != nil)
	}
	for _, lv := range []int64{1, 3, 4} {
		if c.get(key{"s", lv}, now) == nil {
			t.Errorf("level %d evicted, want kept", lv)
		}
	}
	if c.used > c.max || c.used != 3*ent("s", 1, 1000, 0).cost() {
		t.Errorf("used %d bytes of %d", c.used, c.max)
	}
}

func TestLRUTooLargeIsNotKept(t *testing.T) {
	now := time.UnixMilli(0)
	c := newLRU(1000, nil)
	c.add(ent("s", 1, 100, 0), now)
	if c.add(ent("s", 2, 5000, 0), now) {
		t.Fatal("an entry larger than the cache was kept")
	}
	if c.get(key{"s", 1}, now) == nil {
		t.Fatal("a too large entry evicted a smaller one")
	}
}

func TestLRUExpiry(t *testing.T) {
	now := time.UnixMilli(10_000)
	c := newLRU(1<<20, nil)
	if c.add(ent("s", 1, 10, 9_000), now) {
		t.Fatal("an expired entry was kept")
	}
	c.add(ent("s", 2, 10, 11_000), now)
	c.add(ent("s", 3, 10, 0), now) // never expires
	c.add(ent("t", 1, 10, 12_000), now)
	if c.get(key{"s", 2}, now) == nil {
		t.Fatal("live entry missing")
	}
	later := time.UnixMilli(11_000)
	if c.get(key{"s", 2}, later) != nil {
		t.Fatal("entry served at its expiry time")
	}
	if n := c.sweep(time.UnixMilli(12_500)); n != 1 || c.len() != 1 || c.get(key{"s", 3}, later) == nil {
		t.Fatalf("sweep dropped %d, %d left: want t/1 dropped and s/3 (no TTL) kept", n, c.len())
	}
	if c.used != ent("s", 3, 10, 0).cost() {
		t.Errorf("used %d after removals, want one entry's cost", c.used)
	}
}

func TestLRURenewsExpiryOfSameLevelAndDropsSession(t *testing.T) {
	now := time.UnixMilli(0)
	c := newLRU(1<<20, nil)
	c.add(ent("s", 1, 10, 100), now)
	c.add(ent("s", 1, 10, 500), now)
	if e := c.get(key{"s", 1}, time.UnixMilli(200)); e == nil || e.expires != 500 {
		t.Fatalf("re-adding a level with a later expiry: got %+v", e)
	}
	c.add(ent("s", 2, 10, 0), now)
	c.add(ent("u", 1, 10, 0), now)
	if n := c.dropSession("s"); n != 2 || c.len() != 1 {
		t.Fatalf("dropSession removed %d, %d left", n, c.len())
	}
}
