package queue

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: GRIDD_SEED or random)")

// testSeed returns the seed to use and logs it so that a failure can be
// replayed with -seed or GRIDD_SEED.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		if s := os.Getenv("GRIDD_SEED"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("GRIDD_SEED=%q: %v", s, err)
			}
			seed = v
		}
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -seed=%d or GRIDD_SEED=%d)", seed, seed, seed)
	return seed
}

type pushed struct {
	v    string
	prio int32
	seq  uint64
}

func TestPriorityOrder(t *testing.T) {
	tests := []struct {
		name string
		in   []pushed
		want []string
	}{
		{"empty", nil, nil},
		{"one", []pushed{{"a", 1, 1}}, []string{"a"}},
		{"higher priority first", []pushed{{"lo", 1, 1}, {"hi", 9, 2}, {"mid", 5, 3}},
			[]string{"hi", "mid", "lo"}},
		{"fifo within priority", []pushed{{"c", 3, 30}, {"a", 3, 10}, {"b", 3, 20}},
			[]string{"a", "b", "c"}},
		{"mixed", []pushed{{"x2", 2, 5}, {"y1", 7, 9}, {"x1", 2, 1}, {"y0", 7, 3}, {"z", 0, 0}},
			[]string{"y0", "y1", "x1", "x2", "z"}},
		{"negative priorities", []pushed{{"n", -5, 1}, {"p", 0, 2}}, []string{"p", "n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var q Priority[string]
			for _, p := range tc.in {
				q.Push(p.v, p.prio, p.seq)
			}
			if q.Len() != len(tc.in) {
				t.Fatalf("Len = %d, want %d", q.Len(), len(tc.in))
			}
			var got []string
			for q.Len() > 0 {
				peek, _ := q.Peek()
				v, ok := q.Pop()
				if !ok || v != peek {
					t.Fatalf("Pop = %q,%v; Peek said %q", v, ok, peek)
				}
				got = append(got, v)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("order = %q, want %q", got, tc.want)
			}
			if _, ok := q.Pop(); ok {
				t.Fatal("Pop on empty queue returned ok")
			}
			if _, ok := q.Peek(); ok {
				t.Fatal("Peek on empty queue returned ok")
			}
		})
	}
}

func TestPriorityItem(t *testing.T) {
	var q Priority[int]
	q.Push(7, 4, 99)
	it, ok := q.PeekItem()
	if !ok || it != (Item[int]{Value: 7, Priority: 4, Seq: 99}) {
		t.Fatalf("PeekItem = %+v,%v", it, ok)
	}
	it, ok = q.PopItem()
	if !ok || it.Value != 7 || q.Len() != 0 {
		t.Fatalf("PopItem = %+v,%v len %d", it, ok, q.Len())
	}
	q.Push(1, 1, 1)
	q.Reset()
	if q.Len() != 0 {
		t.Fatal("Reset left elements")
	}
}

func TestPriorityShrinks(t *testing.T) {
	var q Priority[int]
	for i := range 100_000 {
		q.Push(i, int32(i%7), uint64(i))
	}
	for q.Len() > 10 {
		q.Pop()
	}
	if c := cap(q.items); c > 4*minShrinkCap {
		t.Fatalf("cap %d after draining to 10 elements: memory not released", c)
	}
}

func TestFIFOOrder(t *testing.T) {
	tests := []struct {
		name string
		ops  string // digits push themselves, 'p' pops
		want string // popped values
	}{
		{"empty", "", ""},
		{"push pop", "1p", "1"},
		{"fifo", "123ppp", "123"},
		{"interleaved", "12p34pp5pp", "12345"},
		{"pop empty", "pp1p", "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var q FIFO[byte]
			var got []byte
			for _, c := range []byte(tc.ops) {
				if c == 'p' {
					if v, ok := q.Pop(); ok {
						got = append(got, v)
					}
					continue
				}
				q.Push(c)
			}
			if string(got) != tc.want {
				t.Fatalf("popped %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFIFOAtAndWrap(t *testing.T) {
	var q FIFO[int]
	// Move the head around the ring so that At must wrap.
	for i := range 10 {
		q.Push(i)
	}
	for range 8 {
		q.Pop()
	}
	for i := 10; i < 24; i++ {
		q.Push(i)
	}
	for i := range q.Len() {
		if got := q.At(i); got != 8+i {
			t.Fatalf("At(%d) = %d, want %d", i, got, 8+i)
		}
	}
	if v, ok := q.Peek(); !ok || v != 8 {
		t.Fatalf("Peek = %d,%v", v, ok)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("At out of range did not panic")
		}
	}()
	q.At(q.Len())
}

func TestFIFOShrinks(t *testing.T) {
	var q FIFO[int]
	for i := range 1 << 20 {
		q.Push(i)
	}
	for q.Len() > 3 {
		q.Pop()
	}
	if len(q.buf) > 4*minFIFOCap {
		t.Fatalf("ring of %d after draining to 3 elements: memory not released", len(q.buf))
	}
	q.Reset()
	if q.Len() != 0 || q.buf != nil {
		t.Fatal("Reset kept state")
	}
}

// TestPriorityRandom checks the heap against a sorted slice over random
// pushes and pops.
func TestPriorityRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	for round := range 50 {
		var q Priority[int]
		var ref []Item[int]
		var seq uint64
		ops := rng.IntN(3000)
		for op := range ops {
			if rng.IntN(3) > 0 {
				seq++
				prio := int32(rng.IntN(5))
				q.Push(op, prio, seq)
				ref = append(ref, Item[int]{Value: op, Priority: prio, Seq: seq})
				continue
			}
			got, ok := q.PopItem()
			if len(ref) == 0 {
				if ok {
					t.Fatalf("round %d op %d: Pop on empty returned %+v", round, op, got)
				}
				continue
			}
			best := 0
			for i := range ref {
				if before(&ref[i], &ref[best]) {
					best = i
				}
			}
			want := ref[best]
			ref = slices.Delete(ref, best, best+1)
			if !ok || got != want {
				t.Fatalf("round %d op %d: Pop = %+v,%v want %+v", round, op, got, ok, want)
			}
			if q.Len() != len(ref) {
				t.Fatalf("round %d op %d: Len = %d want %d", round, op, q.Len(), len(ref))
			}
		}
	}
}

// TestFIFORandom checks the ring against a slice over random pushes and
// pops, with bursts that make it grow and shrink.
func TestFIFORandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	var q FIFO[int]
	var ref []int
	next := 0
	for op := range 200_000 {
		// Alternate long phases biased to push and to pop.
		pushBias := 2
		if (op/5000)%2 == 1 {
			pushBias = 1
		}
		if rng.IntN(3) < pushBias {
			q.Push(next)
			ref = append(ref, next)
			next++
		} else {
			got, ok := q.Pop()
			if len(ref) == 0 {
				if ok {
					t.Fatalf("op %d: Pop on empty returned %d", op, got)
				}
			} else {
				if !ok || got != ref[0] {
					t.Fatalf("op %d: Pop = %d,%v want %d", op, got, ok, ref[0])
				}
				ref = ref[1:]
			}
		}
		if q.Len() != len(ref) {
			t.Fatalf("op %d: Len = %d want %d", op, q.Len(), len(ref))
		}
		if len(ref) > 0 && rng.IntN(100) == 0 {
			i := rng.IntN(len(ref))
			if q.At(i) != ref[i] {
				t.Fatalf("op %d: At(%d) = %d want %d", op, i, q.At(i), ref[i])
			}
		}
	}
}

var benchSizes = []int{1e3, 1e4, 1e5, 1e6}

// BenchmarkPriorityPushPop measures one push and one pop on a queue
// holding n elements (the steady state of a busy dispatcher).
func BenchmarkPriorityPushPop(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var q Priority[uint64]
			for i := range n {
				q.Push(uint64(i), int32(i%11), uint64(i))
			}
			seq := uint64(n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				seq++
				q.Push(seq, int32(seq%11), seq)
				q.Pop()
			}
		})
	}
}

// BenchmarkPriorityFillDrain pushes n elements then pops them all; ns/op is
// per element.
func BenchmarkPriorityFillDrain(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var q Priority[uint64]
			b.ReportAllocs()
			for b.Loop() {
				for i := range n {
					q.Push(uint64(i), int32(i%11), uint64(i))
				}
				for q.Len() > 0 {
					q.Pop()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/elem")
		})
	}
}

func BenchmarkFIFOPushPop(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var q FIFO[uint64]
			for i := range n {
				q.Push(uint64(i))
			}
			b.ReportAllocs()
			var i uint64
			for b.Loop() {
				i++
				q.Push(i)
				q.Pop()
			}
		})
	}
}

func BenchmarkFIFOFillDrain(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var q FIFO[uint64]
			b.ReportAllocs()
			for b.Loop() {
				for i := range n {
					q.Push(uint64(i))
				}
				for q.Len() > 0 {
					q.Pop()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/elem")
		})
	}
}
