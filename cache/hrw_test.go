package cache

import (
	"fmt"
	"testing"
)

// Rendezvous hashing spreads keys over the members, and a member leaving
// moves only the keys it owned.
func TestRendezvousOwners(t *testing.T) {
	all := []member{{name: "a"}, {name: "b"}, {name: "c"}, {name: "d"}}
	const keys = 4000
	owners := make(map[string]int)
	before := make(map[key]string)
	for i := range keys {
		k := key{fmt.Sprintf("session-%d", i%50), int64(i/50 + 1)}
		o := ownerOf(all, k).name
		owners[o]++
		before[k] = o
	}
	for _, m := range all {
		if n := owners[m.name]; n < keys/8 {
			t.Errorf("member %s owns %d of %d keys: the spread is lopsided (%v)", m.name, n, keys, owners)
		}
	}
	// Order of the member list must not matter: every cache sees its own.
	reversed := []member{all[3], all[2], all[1], all[0]}
	without := all[:3]
	for k, o := range before {
		if got := ownerOf(reversed, k).name; got != o {
			t.Fatalf("owner of %v depends on the member order: %s and %s", k, o, got)
		}
		if got := ownerOf(without, k).name; o != "d" && got != o {
			t.Fatalf("d left and %v moved from %s to %s", k, o, got)
		}
	}
	if m := ownerOf(nil, key{"s", 1}); m.name != "" {
		t.Errorf("owner among no members: %v", m)
	}
}
