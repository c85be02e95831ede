package goproc

import (
	"fmt"
	"slices"
	"testing"
)

// TestConfirmRules: a Read after the first keeps a goroutine read once
// only when its g, its stack and its channels' sudogs are the same as the
// last Read kept; a stack changed under the same g, a g changed, a
// channel changed, a g the last Read did not keep, each is read twice
// again (returned), never shown as it was.
func TestConfirmRules(t *testing.T) {
	L := layouts["go1.26"]
	m := &fakeMem{objs: map[uint64][]byte{}}
	put := func(addr uint64, off int, v uint64) { le.PutUint64(m.objs[addr][off:], v) }
	// A g at 0x10000*id, its stack [lo, lo+0x800) at 0x100000*id with 0x100
	// bytes in use, its sudog at 0x10000*id+0x1000.
	gor := func(id uint64, status uint32, reason string) uint64 {
		addr := id * 0x10000
		b := make([]byte, L.GSize)
		m.objs[addr] = b
		lo := id * 0x100000
		le.PutUint64(b[L.GGoid:], id)
		le.PutUint32(b[L.GStatus:], status)
		le.PutUint64(b[L.GStackLo:], lo)
		le.PutUint64(b[L.GStackHi:], lo+0x800)
		le.PutUint64(b[L.GSchedSP:], lo+0x700)
		le.PutUint64(b[L.GSchedPC:], 0x401000)
		b[L.GWaitReas] = uint8(slices.Index(L.WaitReasons, reason))
		stack := make([]byte, 0x100)
		for i := range stack {
			stack[i] = byte(id + uint64(i))
		}
		m.objs[lo+0x700] = stack
		if reason == "chan receive" {
			le.PutUint64(b[L.GWaiting:], addr+0x1000)
			m.objs[addr+0x1000] = make([]byte, L.SudogSize)
			put(addr+0x1000, L.SudogG, addr)
			put(addr+0x1000, L.SudogC, 0xc0000+8*id)
		}
		return addr
	}
	same := gor(1, gWaiting, "sleep")
	stackChanged := gor(2, gWaiting, "sleep")
	gChanged := gor(3, gWaiting, "sleep")
	chanSame := gor(4, gWaiting, "chan receive")
	chanChanged := gor(5, gWaiting, "chan receive")
	dead := gor(6, gDead, "")
	unknown := gor(7, gWaiting, "sleep")
	addrs := []uint64{same, stackChanged, gChanged, chanSame, chanChanged, dead, unknown}

	p := &Process{Binary: &Binary{layout: L}, opts: Options{}.withDefaults()}
	r := &reader{mem: m, budget: 1 << 30}
	// The last Read: each goroutine as it is now, but unknown's.
	var sc gScratch
	reads := p.readGs(r, addrs, &sc)
	chains := p.followChans(r, addrs, reads, L.WaitReasons)
	p.recheckChans(r, chains)
	last := &Image{}
	var deadGs []deadG
	for j, a := range addrs {
		if a == unknown {
			continue
		}
		if a == dead {
			deadGs = append(deadGs, deadG{addr: a, sum: p.sum(reads[j])})
			continue
		}
		g := Goroutine{ID: int64(j + 1), addr: a, sum: p.sum(reads[j]), confirmable: true, Waits: &Wait{Kind: "stale"}}
		if c := chainAt(chains, j); c != nil {
			if c.bad || c.long {
				t.Fatalf("g at %#x: its sudog does not check", a)
			}
			g.Chans, g.chainSum = c.chans, p.chainSum(c)
		}
		last.Goroutines = append(last.Goroutines, g)
	}
	p.keep(last, L.WaitReasons, deadGs)
	if r.err != nil {
		t.Fatal(r.err)
	}

	// Then the target moves on.
	m.objs[2*0x100000+0x700][0x80]++ // a byte of its stack, its g the same
	put(gChanged, L.GSchedPC, 0x402000)
	put(chanChanged+0x1000, L.SudogC, 0xd0000)

	img := &Image{}
	var nowDead []deadG
	rest := p.confirm(r, p.lastRead(L.WaitReasons), addrs, &sc, L.WaitReasons, 0, img, &nowDead)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if want := []uint64{stackChanged, gChanged, chanChanged, unknown}; !slices.Equal(rest, want) {
		t.Errorf("read twice again: %#x; want %#x", rest, want)
	}
	var kept []uint64
	for _, g := range img.Goroutines {
		kept = append(kept, g.addr)
		if g.Waits != nil {
			t.Errorf("g at %#x keeps the last Read's wait %+v; waits are read afresh", g.addr, g.Waits)
		}
	}
	if want := []uint64{same, chanSame}; !slices.Equal(kept, want) {
		t.Errorf("kept with one copy: %#x; want %#x", kept, want)
	}
	if len(nowDead) != 1 || nowDead[0].addr != dead {
		t.Errorf("g's not in use: %+v; want the one at %#x", nowDead, dead)
	}
	if len(img.Goroutines) < 2 {
		return
	}
	if c := img.Goroutines[1].Chans; !slices.Equal(c, []uint64{0xc0020}) {
		t.Errorf("channels %#x; want 0xc0020", c)
	}
}

// TestSortByID: goroutines moved in place along the permutation's cycles
// come out by id, each whole, none lost or doubled.
func TestSortByID(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 1000} {
		img := &Image{}
		for i := range n {
			id := int64((i*7919 + 13) % (n + 1)) // a permutation's worth of disorder
			img.Goroutines = append(img.Goroutines, Goroutine{ID: id, addr: uint64(id) * 16, StackNote: fmt.Sprint(id)})
		}
		sortByID(img)
		for k, g := range img.Goroutines {
			if k > 0 && img.Goroutines[k-1].ID >= g.ID {
				t.Fatalf("n=%d: ids %d then %d at %d", n, img.Goroutines[k-1].ID, g.ID, k)
			}
			if g.addr != uint64(g.ID)*16 || g.StackNote != fmt.Sprint(g.ID) {
				t.Fatalf("n=%d: goroutine %d torn: %+v", n, g.ID, g)
			}
		}
		if len(img.Goroutines) != n {
			t.Fatalf("n=%d: %d goroutines after", n, len(img.Goroutines))
		}
	}
}
