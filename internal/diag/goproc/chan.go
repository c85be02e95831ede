package goproc

import (
	"fmt"
	"slices"
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

// A chanChain is one goroutine's sudogs as read.
type chanChain struct {
	g      int      // its index in Image.Goroutines
	sudogs []uint64 // their addresses, in waitlink order
	fields []uint64 // per sudog: g, c, elem, waitlink
	long   bool     // more than maxCases
	bad    bool     // a sudog that does not check
	next   uint64   // the next sudog to read
}

// sudogFields are the sudog's fields that stay the same while its
// goroutine stays parked on it (next and prev change as other goroutines
// queue on the same channel).
func sudogFields(L Layout, b []byte) [4]uint64 {
	return [4]uint64{le.Uint64(b[L.SudogG:]), le.Uint64(b[L.SudogC:]), le.Uint64(b[L.SudogElem:]), le.Uint64(b[L.SudogWaitlink:])}
}

// chans finds the channels each goroutine blocked on channels waits for,
// from its sudogs (g.waiting, then waitlink), read in rounds of one sudog
// per goroutine. The target runs meanwhile: a goroutine's channels are
// kept only when each sudog names the goroutine and a channel, the
// goroutine still waits on the same sudog, for the same reason at the
// same pc and sp, when read again after them, and its sudogs are the same
// when read again after that. A goroutine that woke and parked again on
// another channel in between gives no channels, never a wrong one.
func (p *Process) chans(r *reader, img *Image) {
	L := p.Binary.layout
	var all, live []*chanChain
	for i := range img.Goroutines {
		g := &img.Goroutines[i]
		if !chanReasons[g.WaitReason] || g.waiting == 0 || g.waiting%8 != 0 {
			continue
		}
		c := &chanChain{g: i, next: g.waiting}
		all = append(all, c)
		live = append(live, c)
	}
	if len(all) == 0 {
		return
	}
	changed, long := 0, 0
	for len(live) > 0 {
		slab := make([]byte, len(live)*L.SudogSize)
		ps := make([]Piece, len(live))
		for k, c := range live {
			ps[k] = Piece{Addr: c.next, Buf: slab[k*L.SudogSize : (k+1)*L.SudogSize]}
		}
		if r.piecesNear(ps) != nil {
			return
		}
		keep := live[:0]
		for k, c := range live {
			g := &img.Goroutines[c.g]
			f := sudogFields(L, ps[k].Buf)
			if !ps[k].OK || f[0] != g.addr || f[1] == 0 || f[1]%8 != 0 {
				c.bad = true // woke, or not a sudog of its
				continue
			}
			c.sudogs = append(c.sudogs, ps[k].Addr)
			c.fields = append(c.fields, f[:]...)
			link := f[3]
			switch {
			case link == 0:
				continue
			case g.WaitReason != "select" && g.WaitReason != "select (durable)",
				link%8 != 0, slices.Contains(c.sudogs, link):
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
	// The g's again, then the sudogs again.
	var ok []*chanChain
	for _, c := range all {
		switch {
		case c.long:
			long++
		case c.bad:
			changed++
		default:
			ok = append(ok, c)
		}
	}
	gs := make([]Piece, len(ok))
	gslab := make([]byte, len(ok)*L.GSize)
	var ss []Piece
	for k, c := range ok {
		gs[k] = Piece{Addr: img.Goroutines[c.g].addr, Buf: gslab[k*L.GSize : (k+1)*L.GSize]}
		for _, a := range c.sudogs {
			ss = append(ss, Piece{Addr: a})
		}
	}
	sslab := make([]byte, len(ss)*L.SudogSize)
	for k := range ss {
		ss[k].Buf = sslab[k*L.SudogSize : (k+1)*L.SudogSize]
	}
	if r.piecesNear(gs) != nil || r.piecesNear(ss) != nil {
		return
	}
	k := 0
	for i, c := range ok {
		g := &img.Goroutines[c.g]
		a, first := gs[i], k
		k += len(c.sudogs)
		if !a.OK || int64(le.Uint64(a.Buf[L.GGoid:])) != g.ID || le.Uint32(a.Buf[L.GStatus:])&^gScan != gWaiting ||
			le.Uint64(a.Buf[L.GWaiting:]) != g.waiting || le.Uint64(a.Buf[L.GSchedSP:]) != g.schedSP ||
			le.Uint64(a.Buf[L.GSchedPC:]) != g.schedPC || a.Buf[L.GWaitReas] != g.reason {
			changed++
			continue
		}
		same := true
		for j, s := range ss[first:k] {
			f := sudogFields(L, s.Buf)
			if !s.OK || !slices.Equal(f[:], c.fields[j*4:j*4+4]) {
				same = false
				break
			}
		}
		if !same {
			changed++
			continue
		}
		var cs []uint64
		for j := range c.sudogs {
			cs = append(cs, c.fields[j*4+1])
		}
		slices.Sort(cs)
		g.Chans = slices.Compact(cs)
	}
	if changed > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%d goroutines woke while the channels they wait for were read, or their sudogs did not check: their channels are left out", changed))
	}
	if long > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%d goroutines wait in a select of more than %d channels: their channels are left out", long, maxCases))
	}
}
