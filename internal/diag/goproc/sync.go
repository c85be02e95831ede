package goproc

import (
	"fmt"
	"slices"
	"strings"
)

// waitKinds maps a wait reason to what the goroutine waits on, and where
// that object is relative to the address its sudog holds (sudog.elem: a
// semaphore's or a notify list's address).
var waitKinds = map[string]struct {
	kind string
	back uint64 // object address = elem - back
	read bool
}{
	// internal/sync.Mutex{state int32; sema uint32}, sync.Mutex wraps it.
	"sync.Mutex.Lock": {"sync.Mutex", 4, false},
	// sync.RWMutex{w Mutex; writerSem, readerSem uint32; readerCount,
	// readerWait atomic.Int32}: a reader waits on readerSem, a writer
	// waits on writerSem for the readers to leave.
	"sync.RWMutex.RLock": {"sync.RWMutex", 12, true},
	"sync.RWMutex.Lock":  {"sync.RWMutex", 8, false},
	// sync.WaitGroup{noCopy; state atomic.Uint64; sema uint32}
	"sync.WaitGroup.Wait": {"sync.WaitGroup", 8, false},
	// sync.Cond{noCopy; L Locker; notify notifyList; checker}
	"sync.Cond.Wait": {"sync.Cond", 16, false},
	"semacquire":     {"semaphore", 0, false},
	// Channel waits are read by chans (chan.go).
}

// waits finds what each blocked goroutine waits on, from its sudog
// (g.waiting): trusted only when the sudog's back-pointer names the
// goroutine and the goroutine still waits on it when read again after.
func (p *Process) waits(r *reader, img *Image) {
	L := p.Binary.layout
	var ps []Piece
	var who []int
	for i := range img.Goroutines {
		g := &img.Goroutines[i]
		if _, ok := waitKinds[g.WaitReason]; !ok || g.waiting == 0 || g.waiting%8 != 0 {
			continue
		}
		ps = append(ps, Piece{Addr: g.waiting, Buf: make([]byte, L.SudogSize)})
		who = append(who, i)
	}
	if len(ps) == 0 || r.pieces(ps) != nil {
		return
	}
	// The g's again: still waiting, for the same reason, on the same sudog.
	again := make([]Piece, len(who))
	for k, i := range who {
		again[k] = Piece{Addr: img.Goroutines[i].addr, Buf: make([]byte, L.GSize)}
	}
	if r.pieces(again) != nil {
		return
	}
	changed := 0
	for k, i := range who {
		g := &img.Goroutines[i]
		s, a := ps[k], again[k]
		if !s.OK || !a.OK || le.Uint64(s.Buf[L.SudogG:]) != g.addr ||
			int64(le.Uint64(a.Buf[L.GGoid:])) != g.ID || le.Uint32(a.Buf[L.GStatus:])&^gScan != gWaiting ||
			le.Uint64(a.Buf[L.GWaiting:]) != g.waiting {
			changed++
			continue
		}
		wk := waitKinds[g.WaitReason]
		addr := le.Uint64(s.Buf[L.SudogElem:]) - wk.back
		if addr == 0 {
			continue
		}
		w := &Wait{Kind: wk.kind, Addr: addr, Read: wk.read}
		// A writer queued behind another writer waits on the RWMutex's
		// own writer mutex, whose address is the RWMutex's.
		if wk.kind == "sync.Mutex" && g.calls("sync.(*RWMutex).Lock") {
			w.Kind = "sync.RWMutex"
		}
		g.Waits = w
	}
	if changed > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%d goroutines woke while their waits were read: their waits are left out", changed))
	}
}

// calls reports whether a frame of g is in function name.
func (g *Goroutine) calls(name string) bool {
	for _, f := range g.Frames {
		if f.Func == name {
			return true
		}
	}
	return false
}

// locks groups the waits by object, reads each lock's state word and
// names the holders that the deferred unlocks give evidence of.
func (p *Process) locks(r *reader, img *Image) {
	byAddr := map[uint64]*Lock{}
	drop := map[uint64]bool{} // drop-in mutexes (dropin.go)
	var order []uint64
	for _, g := range img.Goroutines {
		w := g.Waits
		if w == nil {
			continue
		}
		if g.dropInWait() {
			drop[w.Addr] = true
		}
		l := byAddr[w.Addr]
		if l == nil {
			l = &Lock{Addr: w.Addr, Kind: w.Kind}
			byAddr[w.Addr] = l
			order = append(order, w.Addr)
		}
		if w.Kind == "sync.RWMutex" {
			l.Kind = w.Kind // a Mutex wait at an RWMutex's address is its writer mutex's
		}
		l.Waiters = append(l.Waiters, Waiter{Goroutine: g.ID, Read: w.Read})
	}
	slices.Sort(order)
	ps := make([]Piece, len(order))
	for i, a := range order {
		n := 0
		switch byAddr[a].Kind {
		case "sync.Mutex":
			n = 8
		case "sync.RWMutex":
			n = 24
		}
		ps[i] = Piece{Addr: a, Buf: make([]byte, n)}
	}
	if r.pieces(ps) != nil {
		return
	}
	for i, a := range order {
		l := byAddr[a]
		if !p.Binary.Stripped {
			l.Name, _ = p.Binary.symbolAt(a - p.bias)
		}
		if len(ps[i].Buf) > 0 && ps[i].OK {
			decodeState(l, ps[i].Buf)
		}
	}
	p.owners(r, img, byAddr, drop)
	// Holders: pending deferred unlocks that capture a lock's address.
	for _, g := range img.Goroutines {
		for _, d := range g.defers {
			l := byAddr[d.addr]
			if l == nil {
				continue
			}
			h := Holder{Goroutine: g.ID}
			switch {
			case l.Kind == "sync.Mutex" && d.kind == "Mutex" && l.Locked:
			case l.Kind == "sync.RWMutex" && d.kind == "RWMutex" && l.WriterHolds:
			case l.Kind == "sync.RWMutex" && d.kind == "RWMutex.R" && l.ReadersHolding > 0:
				h.Read = true
			default:
				continue
			}
			verb := "Unlock"
			if h.Read {
				verb = "RUnlock"
			}
			h.Evidence = fmt.Sprintf("a pending deferred %s of it in %s (%s captures its address)", verb, d.frame, d.wrap)
			if !slices.ContainsFunc(l.Holders, func(x Holder) bool { return x.Goroutine == h.Goroutine }) {
				l.Holders = append(l.Holders, h)
			}
		}
	}
	for _, a := range order {
		img.Locks = append(img.Locks, *byAddr[a])
	}
}

const (
	mutexLocked   = 1
	mutexWoken    = 2
	mutexStarving = 4
	mutexShift    = 3
	maxReaders    = 1 << 30
)

// decodeState decodes a Mutex's state word, or an RWMutex's writer mutex
// and reader counts.
func decodeState(l *Lock, b []byte) {
	st := int32(le.Uint32(b))
	l.Locked = st&mutexLocked != 0
	var parts []string
	if l.Locked {
		parts = append(parts, "locked")
	} else {
		parts = append(parts, "unlocked")
	}
	if st&mutexStarving != 0 {
		parts = append(parts, "starving")
	}
	if st&mutexWoken != 0 {
		parts = append(parts, "woken")
	}
	if n := st >> mutexShift; n > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting", n))
	}
	if l.Kind == "sync.RWMutex" && len(b) >= 24 {
		rc, rw := int32(le.Uint32(b[16:])), int32(le.Uint32(b[20:]))
		parts[0] = "writer mutex " + parts[0]
		if rc < 0 {
			// A writer has announced itself: rw readers still hold it,
			// the others are blocked behind the writer.
			l.ReadersHolding = int(rw)
			l.WriterHolds = rw == 0 && l.Locked
			blocked := int(rc) + maxReaders - int(rw)
			if l.WriterHolds {
				parts = append(parts, "a writer holds it")
			} else {
				parts = append(parts, fmt.Sprintf("a writer waits for %d readers", rw))
			}
			if blocked > 0 {
				parts = append(parts, fmt.Sprintf("%d readers blocked", blocked))
			}
		} else {
			l.ReadersHolding = int(rc)
			parts = append(parts, fmt.Sprintf("%d readers hold it", rc))
		}
	}
	l.State = strings.Join(parts, ", ")
}
