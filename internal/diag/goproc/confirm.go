package goproc

import (
	"hash/maphash"
	"slices"
	"time"
)

// A Read after the first confirms most goroutines with one copy instead
// of two. Within one Read, a goroutine is kept when two copies of its g and
// stack, read one after the other, agree byte for byte (a copy taken while
// it ran is torn, and does not agree). The last Read's kept copy is such a
// copy too: a goroutine whose g and stack read now agree with it, and
// whose channels' sudogs agree too, is kept with this one copy, decoded as
// before. Any other goroutine (woken, new, or not kept last time) is read
// twice as in a first Read.
//
// Copies are compared by a 64-bit keyed hash (hash/maphash, a seed drawn
// per process read) of the g's bytes and the stack's, so that a Read keeps
// 8 bytes a goroutine rather than its stack: two different copies agree
// with a probability of 2^-64, which the target cannot aim at (it does
// not know the seed).

// lastG is what the last Read kept of one g: the hash of its copy, its
// goroutine's index in that Read's image (-1 for a g not in use), and the
// hash of the sudogs of the channels it waits for.
type lastG struct {
	sum, chainSum uint64
	idx           int32
}

// lastImage is the last Read's kept copies, by g address.
type lastImage struct {
	img     *Image
	reasons []string
	gs      map[uint64]lastG
}

// deadG is a g not in use (dead or idle), as read: it is left out of the
// image, and the next Read confirms it as it does a goroutine.
type deadG struct {
	addr, sum uint64
}

// lastRead returns the last Read's copies, nil if there was none or it
// read the wait reasons otherwise (then its decoding does not hold).
func (p *Process) lastRead(reasons []string) *lastImage {
	if p.last == nil || !slices.Equal(p.last.reasons, reasons) {
		return nil
	}
	return p.last
}

// keep records the copies of this Read for the next.
func (p *Process) keep(img *Image, reasons []string, dead []deadG) {
	gs := make(map[uint64]lastG, len(img.Goroutines)+len(dead))
	for i := range img.Goroutines {
		g := &img.Goroutines[i]
		if g.confirmable {
			gs[g.addr] = lastG{sum: g.sum, chainSum: g.chainSum, idx: int32(i)}
		}
	}
	for _, d := range dead {
		gs[d.addr] = lastG{sum: d.sum, idx: -1}
	}
	p.last = &lastImage{img: img, reasons: reasons, gs: gs}
}

// sum is the keyed hash of one copy of a g and its stack (whether the
// stack was read at all counts too: an unread stack decodes otherwise than
// an empty one).
func (p *Process) sum(gr gRead) uint64 {
	var h maphash.Hash
	h.SetSeed(p.hashSeed())
	h.Write(gr.raw)
	if gr.stack != nil {
		h.WriteByte(1)
		h.Write(gr.stack)
	}
	return h.Sum64()
}

// hashSeed is the process's key of the hashes, drawn at its first use.
func (p *Process) hashSeed() maphash.Seed {
	if !p.seeded {
		p.seed, p.seeded = maphash.MakeSeed(), true
	}
	return p.seed
}

// confirm reads the g's at addrs and their stacks once, then the sudogs of
// those parked on channels, and keeps every goroutine whose copy agrees
// with the last Read's: decoded as it was then (its wait time counted to
// now), appended to img; a g not in use that agrees goes to dead. It
// returns the g's to read twice.
func (p *Process) confirm(r *reader, last *lastImage, addrs []uint64, sc *gScratch, reasons []string, now int64, img *Image, dead *[]deadG) []uint64 {
	reads := p.readGs(r, addrs, sc)
	var chains []*chanChain
	if !p.opts.NoChans {
		chains = p.followChans(r, addrs, reads, reasons)
	}
	if r.err != nil {
		return nil
	}
	var rest []uint64
	for j, addr := range addrs {
		gr := reads[j]
		was, ok := last.gs[addr]
		if !gr.ok || !ok || p.sum(gr) != was.sum || !p.sameChain(chainAt(chains, j), was.chainSum) {
			rest = append(rest, addr)
			continue
		}
		if was.idx < 0 {
			*dead = append(*dead, deadG{addr: addr, sum: was.sum})
			continue
		}
		g := last.img.Goroutines[was.idx]
		g.Waits = nil // read afresh by waits
		p.waited(&g, now)
		img.Goroutines = append(img.Goroutines, g)
	}
	return rest
}

// sameChain reports whether the sudogs read now (c) are those the last
// Read kept, field for field (by their hash, chainSum); both none for a
// goroutine not parked on channels.
func (p *Process) sameChain(c *chanChain, was uint64) bool {
	if c != nil && (c.bad || c.long) {
		return false
	}
	return p.chainSum(c) == was
}

// waited sets how long a waiting goroutine has waited, as of now, from
// g.waitsince (see Goroutine.WaitingAtLeast).
func (p *Process) waited(g *Goroutine, now int64) {
	if ws := g.waitsince; ws > 0 {
		g.WaitKnown = true
		if p.Core == "" && now > ws {
			g.WaitingAtLeast = time.Duration(now - ws)
		}
	}
}
