package goproc

import (
	"slices"
	"testing"
)

// fakeMem is an address space of a few objects; after runs after each
// read (the target moving on).
type fakeMem struct {
	objs  map[uint64][]byte
	calls int
	after func(call int)
}

func (m *fakeMem) ReadPieces(ps []Piece) error {
	for i := range ps {
		b, ok := m.objs[ps[i].Addr]
		ps[i].OK = ok && len(b) >= len(ps[i].Buf)
		if ps[i].OK {
			copy(ps[i].Buf, b)
		}
	}
	m.calls++
	if m.after != nil {
		m.after(m.calls)
	}
	return nil
}

// TestChansHostile reads the channels of goroutines whose sudogs are
// damaged or change while they are read: each gives its channels only
// when they are consistent, never a wrong one, and the reading ends.
func TestChansHostile(t *testing.T) {
	L := layouts["go1.26"]
	m := &fakeMem{objs: map[uint64][]byte{}}
	var addrs []uint64
	reasons := map[string]uint8{"chan receive": 19, "chan send": 20, "select": 18}
	if L.WaitReasons[19] != "chan receive" || L.WaitReasons[20] != "chan send" || L.WaitReasons[18] != "select" {
		t.Fatal("the table's wait reasons moved")
	}
	put := func(addr uint64, off int, v uint64) {
		b := m.objs[addr]
		le.PutUint64(b[off:], v)
	}
	sudog := func(addr, g, c, link uint64) {
		m.objs[addr] = make([]byte, L.SudogSize)
		put(addr, L.SudogG, g)
		put(addr, L.SudogC, c)
		put(addr, L.SudogWaitlink, link)
	}
	// goroutine id at 0x10000*id, its first sudog at 0x10000*id+0x1000.
	gor := func(id int64, reason string) uint64 {
		addr := uint64(id) * 0x10000
		b := make([]byte, L.GSize)
		m.objs[addr] = b
		le.PutUint64(b[L.GGoid:], uint64(id))
		le.PutUint32(b[L.GStatus:], gWaiting)
		le.PutUint64(b[L.GWaiting:], addr+0x1000)
		le.PutUint64(b[L.GSchedPC:], 0x401000)
		le.PutUint64(b[L.GSchedSP:], addr+0x8000)
		b[L.GWaitReas] = reasons[reason]
		addrs = append(addrs, addr)
		return addr
	}
	// 1: a select on three cases, two of one channel.
	g := gor(1, "select")
	sudog(g+0x1000, g, 0x3000, g+0x1100)
	sudog(g+0x1100, g, 0x1000, g+0x1200)
	sudog(g+0x1200, g, 0x3000, 0)
	// 2: a send with a second sudog.
	g = gor(2, "chan send")
	sudog(g+0x1000, g, 0x3000, g+0x1100)
	sudog(g+0x1100, g, 0x3000, 0)
	// 3: a select whose sudogs loop.
	g = gor(3, "select")
	sudog(g+0x1000, g, 0x3000, g+0x1100)
	sudog(g+0x1100, g, 0x4000, g+0x1000)
	// 4: a select of more than maxCases sudogs.
	g = gor(4, "select")
	for i := range uint64(maxCases + 10) {
		sudog(g+0x1000+i*0x10, g, 0x3000+i*8, g+0x1000+(i+1)*0x10)
	}
	// 5: a receive whose sudog is another goroutine's.
	g = gor(5, "chan receive")
	sudog(g+0x1000, 1*0x10000, 0x3000, 0)
	// 6: a receive whose sudog changes channel after it is first read.
	g6 := gor(6, "chan receive")
	sudog(g6+0x1000, g6, 0x5000, 0)
	// 7: a receive on a sudog that is freed (its channel cleared) after
	// it is first read.
	g7 := gor(7, "chan receive")
	sudog(g7+0x1000, g7, 0x7000, 0)
	// 8: a receive whose sudog is not mapped; 9: with no channel.
	gor(8, "chan receive")
	g = gor(9, "chan receive")
	sudog(g+0x1000, g, 0, 0)
	// 10: a plain receive, read whole.
	g = gor(10, "chan receive")
	sudog(g+0x1000, g, 0x9000, 0)
	m.after = func(call int) {
		if call == 1 {
			put(g6+0x1000, L.SudogC, 0x6000)
			put(g7+0x1000, L.SudogC, 0)
		}
	}
	// The batch's first read of the g's.
	reads := make([]gRead, len(addrs))
	for j, a := range addrs {
		reads[j] = gRead{raw: slices.Clone(m.objs[a]), ok: true}
	}
	p := &Process{Binary: &Binary{layout: L}, opts: Options{}.withDefaults()}
	r := &reader{mem: m, budget: 1 << 30}
	chains := p.followChans(r, addrs, reads, L.WaitReasons)
	p.recheckChans(r, chains)
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := map[int][]uint64{1: {0x1000, 0x3000}, 10: {0x9000}}
	var bad, long []int
	for j, c := range chains {
		if c == nil {
			continue
		}
		id := j + 1
		if !slices.Equal(c.chans, want[id]) {
			t.Errorf("g%d waits for channels %#x; want %#x", id, c.chans, want[id])
		}
		if c.bad {
			bad = append(bad, id)
		}
		if c.long {
			long = append(long, id)
		}
	}
	slices.Sort(bad)
	if len(chains) != 10 || !slices.Equal(bad, []int{2, 3, 5, 6, 7, 8, 9}) || !slices.Equal(long, []int{4}) {
		t.Errorf("%d chains, bad %v, long %v; want 10, bad [2 3 5 6 7 8 9], long [4]", len(chains), bad, long)
	}
	if m.calls > maxCases+4 {
		t.Errorf("%d reads; want rounds of one sudog per goroutine, at most %d", m.calls, maxCases+4)
	}
}
