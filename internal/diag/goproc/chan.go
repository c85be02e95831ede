package goproc

import (
	"hash/maphash"
	"slices"
	"strings"
)

// chanReasons are the wait reasons of a goroutine parked on channels with
// sudogs in g.waiting: one for a send or a receive, a list linked by
// waitlink for a select (one per case whose channel is not nil). A
// goroutine blocked on a nil channel, or in a select with no cases, has
// none.
var chanReasons = map[string]bool{
	"chan receive": true, "chan send": true, "select": true,
	"chan receive (durable)": true, "chan send (durable)": true, "select (durable)": true,
}

// maxCases bounds the sudogs followed for one goroutine: a longer list (a
// select of more cases, or a hostile image) gives no channels and a note.
const maxCases = 256

// A chanChain is one goroutine's sudogs, read between the two reads of
// its g (followChans) and read again after the second (recheckChans).
type chanChain struct {
	g, waiting uint64 // the g's address, its g.waiting
	isSelect   bool
	sudogs     []uint64 // their addresses, in waitlink order
	fields     []uint64 // per sudog: g, c, elem, waitlink
	next       uint64   // the next sudog to read
	long       bool     // more than maxCases
	bad        bool     // a sudog that does not check, or changed
	chans      []uint64 // the result: by address, without repeats
}

// sudogFields are the sudog's fields that stay the same while its
// goroutine stays parked on it (next and prev change as other goroutines
// queue on the same channel).
func sudogFields(L Layout, b []byte) [4]uint64 {
	return [4]uint64{le.Uint64(b[L.SudogG:]), le.Uint64(b[L.SudogC:]), le.Uint64(b[L.SudogElem:]), le.Uint64(b[L.SudogWaitlink:])}
}

// followChans reads the sudogs of the goroutines that the first read of a
// batch (reads, of the g's at addrs) shows parked on channels: g.waiting,
// then waitlink, in rounds of one sudog per goroutine. The result is by
// index in addrs (nil for the others), nil if there are none.
//
// The target runs meanwhile. The channels are kept only when each sudog
// names its goroutine and a channel, the g is the same byte for byte when
// read again after them (the batch's second read: parked on the same
// sudog, for the same reason, at the same pc and sp), and the sudogs are
// the same when read again after that (recheckChans). A goroutine that
// woke and parked again on another channel in between gives no channels,
// never a wrong one.
func (p *Process) followChans(r *reader, addrs []uint64, reads []gRead, reasons []string) []*chanChain {
	L := p.Binary.layout
	sc := &p.chans
	var out []*chanChain
	live := sc.live[:0]
	// The chains, and the first sudog of each (a select's others are
	// appended), in memory reused from batch to batch.
	var arena []chanChain
	var sudogs, fields []uint64
	for j, gr := range reads {
		if !gr.ok || le.Uint32(gr.raw[L.GStatus:])&^gScan != gWaiting {
			continue
		}
		i := int(gr.raw[L.GWaitReas])
		w := le.Uint64(gr.raw[L.GWaiting:])
		if i >= len(reasons) || !chanReasons[reasons[i]] || w == 0 || w%8 != 0 {
			continue
		}
		if out == nil {
			out = grow(sc.out, len(reads))
			clear(out)
			sc.out = out
			arena = grow(sc.arena, len(reads)-j)[:0]
			sudogs, fields = grow(sc.sudogs, len(reads)-j), grow(sc.fields, 4*(len(reads)-j))
			sc.arena, sc.sudogs, sc.fields = arena, sudogs, fields
		}
		k := len(arena)
		arena = append(arena, chanChain{g: addrs[j], waiting: w, next: w, isSelect: strings.HasPrefix(reasons[i], "select"),
			sudogs: sudogs[k : k : k+1], fields: fields[4*k : 4*k : 4*k+4]})
		c := &arena[k]
		out[j] = c
		live = append(live, c)
	}
	for len(live) > 0 {
		slab := grow(sc.slab, len(live)*L.SudogSize)
		ps := grow(sc.ps, len(live))
		sc.slab, sc.ps = slab, ps
		for k, c := range live {
			ps[k] = Piece{Addr: c.next, Buf: slab[k*L.SudogSize : (k+1)*L.SudogSize]}
		}
		if r.piecesNear(ps) != nil {
			return nil
		}
		keep := live[:0]
		for k, c := range live {
			f := sudogFields(L, ps[k].Buf)
			if !ps[k].OK || f[0] != c.g || f[1] == 0 || f[1]%8 != 0 {
				c.bad = true // woke, or not a sudog of its
				continue
			}
			c.sudogs = append(c.sudogs, ps[k].Addr)
			c.fields = append(c.fields, f[:]...)
			link := f[3]
			switch {
			case link == 0:
			case !c.isSelect || link%8 != 0 || slices.Contains(c.sudogs, link):
				c.bad = true // a send or receive has one sudog; no loops
			case len(c.sudogs) >= maxCases:
				c.long = true
			default:
				c.next = link
				keep = append(keep, c)
			}
		}
		live = keep
	}
	sc.live = live
	return out
}

// chanScratch is the memory followChans and recheckChans reuse from batch
// to batch: their chains are used up within their batch (a goroutine
// keeps its channels, and a hash of its sudogs, chainSum).
type chanScratch struct {
	out    []*chanChain
	arena  []chanChain
	live   []*chanChain
	sudogs []uint64
	fields []uint64
	slab   []byte
	ps     []Piece
}

// chainSum is a keyed hash of a chain's sudogs and their fields, to tell
// the next Read's from it (confirm.go); 0 for none.
func (p *Process) chainSum(c *chanChain) uint64 {
	if c == nil {
		return 0
	}
	var h maphash.Hash
	h.SetSeed(p.hashSeed())
	var w [8]byte
	for _, v := range c.sudogs {
		le.PutUint64(w[:], v)
		h.Write(w[:])
	}
	h.WriteByte(0)
	for _, v := range c.fields {
		le.PutUint64(w[:], v)
		h.Write(w[:])
	}
	return h.Sum64() | 1
}

// recheckChans reads the sudogs of chains again, after the second read of
// their g's, and keeps the channels of those that did not change.
func (p *Process) recheckChans(r *reader, chains []*chanChain) {
	L := p.Binary.layout
	var ok []*chanChain
	n := 0
	for _, c := range chains {
		if c != nil && !c.bad && !c.long {
			ok = append(ok, c)
			n += len(c.sudogs)
		}
	}
	if n == 0 {
		return
	}
	sc := &p.chans
	slab := grow(sc.slab, n*L.SudogSize)
	ps := grow(sc.ps, n)[:0]
	sc.slab, sc.ps = slab, ps[:n]
	for _, c := range ok {
		for _, a := range c.sudogs {
			ps = append(ps, Piece{Addr: a, Buf: slab[:L.SudogSize:L.SudogSize]})
			slab = slab[L.SudogSize:]
		}
	}
	if r.piecesNear(ps) != nil {
		return
	}
	all := make([]uint64, 0, n)
	for _, c := range ok {
		for j, s := range ps[:len(c.sudogs)] {
			f := sudogFields(L, s.Buf)
			if !s.OK || !slices.Equal(f[:], c.fields[j*4:j*4+4]) {
				c.bad = true
				break
			}
		}
		ps = ps[len(c.sudogs):]
		if c.bad {
			continue
		}
		start := len(all)
		for j := range c.sudogs {
			all = append(all, c.fields[j*4+1])
		}
		cs := all[start:len(all):len(all)]
		slices.Sort(cs)
		c.chans = slices.Compact(cs)
	}
}

// chainAt is chains[j], nil when there are none.
func chainAt(chains []*chanChain, j int) *chanChain {
	if j < len(chains) {
		return chains[j]
	}
	return nil
}
