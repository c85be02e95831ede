package goproc

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// The drop-in sync (github.com/lockwatch/lockwatch/sync) keeps, in its
// owner mode, the goroutine id of a Mutex's (an RWMutex's writer's) holder
// in the word after sync's: a Mutex is {sync.Mutex; owner int64}, an
// RWMutex {sync.RWMutex; owner int64}. The drop-in stores the id after its
// compare-and-swap takes the lock and clears it before the release, so an
// owner word read as G means that goroutine G held the lock when it was
// read (or exited holding it): an exact holder, not an inference. A
// negative word is the records mode's (its records are in its arena, read
// by dropinmem); 0 names nobody.

// dropInPkg prefixes the drop-in's functions in a waiter's frames (inlined
// frames included): a lock waited for there is a drop-in mutex.
const dropInPkg = "github.com/lockwatch/lockwatch/sync."

// dropInWait reports whether g waits in the drop-in's Lock or RLock: the
// innermost frame past the runtime's and sync's (the wait itself) is one of
// the drop-in's functions that lock. A drop-in frame further out proves
// nothing: a goroutine that waits for another lock (lockwatch's own
// registration mutex, or one a callee of the drop-in takes) has one too,
// and the word after that lock is not an owner word.
func (g *Goroutine) dropInWait() bool {
	for _, f := range g.Frames {
		switch {
		case lockPathFrame(f.Func):
			continue
		case strings.HasPrefix(f.Func, dropInPkg):
			return dropInLocks(f.Func[len(dropInPkg):])
		default:
			return false
		}
	}
	return false
}

// lockPathFrame reports whether fn is a frame of the wait for a lock below
// its caller: the runtime's park and semaphore, sync's Mutex and RWMutex.
func lockPathFrame(fn string) bool {
	for _, p := range []string{"runtime.", "internal/runtime/", "internal/sync.", "sync."} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// dropInLocks reports whether the drop-in's function name (its package
// left out: "(*Mutex).lockSlowPath", "rlockSlow") takes a lock: Lock,
// RLock and the slow paths below them; not Unlock's.
func dropInLocks(name string) bool {
	name = strings.TrimSuffix(name, "[...]") // a generic function's
	base := strings.ToLower(name[strings.LastIndexByte(name, '.')+1:])
	return strings.Contains(base, "lock") && !strings.Contains(base, "unlock")
}

// ownerOffset is where a drop-in lock's owner word is, past its sync
// object: 8 for a Mutex, 24 for an RWMutex.
func ownerOffset(kind string) uint64 {
	if kind == "sync.RWMutex" {
		return 24
	}
	return 8
}

// owners reads the owner word of every drop-in lock of img (those that a
// goroutine waits for in the drop-in) and names its holder.
//
// The target runs while it is read: the waits were verified before the
// owner words are read, and a waiter may since have taken the lock. So
// after the words are read, every waiter of those locks, and every parked
// goroutine a word names, is read again (its g
// and stack) and must agree with the copy the image was decoded from
// (confirm.go's hash), and the words are read again and must not have
// changed. A goroutine whose copy agrees did not run between the two
// copies, so it waited as the image says throughout, and the word was read
// in between: the holder and the waits held at that instant. A lock whose
// waiters or word changed is left without an owner (counted in a note),
// never given a wrong one.
//
// A holder that is not among the goroutines read is looked for again among
// every g (goroutines that kept changing are not in img), then the owner
// word is read once more: a goroutine that no g has, whose id the lock
// still holds after, exited holding the lock (Lock.OwnerGone). It could
// not have taken the lock after it was looked for, being gone, and had it
// released the lock, the word would name another goroutine or none.
func (p *Process) owners(r *reader, img *Image, byAddr map[uint64]*Lock, drop map[uint64]bool) {
	var addrs []uint64
	for a := range drop {
		if l := byAddr[a]; l != nil && (l.Kind == "sync.Mutex" || l.Kind == "sync.RWMutex") {
			addrs = append(addrs, a)
		}
	}
	slices.Sort(addrs)
	if hook := testHookOwners.Load(); hook != nil {
		(*hook)(p.PID)
	}
	words := p.ownerWords(r, byAddr, addrs)
	p.stillWaiting(r, img, byAddr, addrs, words)
	live := make(map[int64]bool, len(img.Goroutines))
	for _, g := range img.Goroutines {
		live[g.ID] = true
	}
	var missing []uint64
	for i, a := range addrs {
		l := byAddr[a]
		l.DropIn = true
		w, ok := words[i]
		if !ok || w <= 0 {
			continue
		}
		l.Owner = w
		if !live[w] {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return
	}
	alive := p.liveIDs(r)
	if alive == nil {
		// Not readable: the holder is named, its fate not told.
		return
	}
	again := p.ownerWords(r, byAddr, missing)
	for i, a := range missing {
		l := byAddr[a]
		if w, ok := again[i]; ok && w == l.Owner && !alive[w] {
			l.OwnerGone = true
		}
	}
}

// ownerWords reads the owner words of the locks at addrs (by index; a word
// that could not be read is left out).
func (p *Process) ownerWords(r *reader, byAddr map[uint64]*Lock, addrs []uint64) map[int]int64 {
	ps := make([]Piece, len(addrs))
	for i, a := range addrs {
		ps[i] = Piece{Addr: a + ownerOffset(byAddr[a].Kind), Buf: make([]byte, 8)}
	}
	out := map[int]int64{}
	if len(ps) == 0 || r.pieces(ps) != nil {
		return out
	}
	for i, pc := range ps {
		if pc.OK {
			out[i] = int64(le.Uint64(pc.Buf))
		}
	}
	return out
}

// liveIDs reads the id of every goroutine that exists now (every g of
// allgs not dead), or nil if allgs cannot be read.
func (p *Process) liveIDs(r *reader) map[int64]bool {
	L := p.Binary.layout
	gptrs, err := p.allgs(r)
	if err != nil {
		return nil
	}
	ps := make([]Piece, 0, len(gptrs))
	for _, a := range gptrs {
		if a != 0 && a%8 == 0 {
			ps = append(ps, Piece{Addr: a, Buf: make([]byte, L.GSize)})
		}
	}
	if r.pieces(ps) != nil {
		return nil
	}
	ids := make(map[int64]bool, len(ps))
	for _, pc := range ps {
		if !pc.OK {
			// A g that cannot be read may be the holder's: its fate is
			// not told.
			return nil
		}
		st := le.Uint32(pc.Buf[L.GStatus:]) &^ gScan
		if st == gDead || st == gDeadExtra || st == gIdle {
			continue
		}
		ids[int64(le.Uint64(pc.Buf[L.GGoid:]))] = true
	}
	return ids
}

// testHookOwners, set by a test, runs in Read after the waits were
// verified, before the owner words are read (nil otherwise).
var testHookOwners atomic.Pointer[func(pid int)]

// stillWaiting reads again the goroutines whose waits the owner words
// (words, by index of addrs) are combined with, then the words, and drops
// from words the locks whose waiters or word changed (see owners).
func (p *Process) stillWaiting(r *reader, img *Image, byAddr map[uint64]*Lock, addrs []uint64, words map[int]int64) {
	if len(words) == 0 {
		return
	}
	at := make(map[uint64]int, len(addrs)) // lock address -> index
	named := map[int64][]int{}             // goroutine id -> the locks whose word names it
	for i, a := range addrs {
		at[a] = i
		if w, ok := words[i]; ok && w > 0 {
			named[w] = append(named[w], i)
		}
	}
	var gaddrs []uint64
	var taints [][]int // by goroutine read: the locks it vouches for
	var sums []uint64
	for i := range img.Goroutines {
		g := &img.Goroutines[i]
		var ls []int
		if g.Waits != nil && g.dropInWait() {
			if k, ok := at[g.Waits.Addr]; ok {
				ls = append(ls, k)
			}
		}
		if g.Status == StateWaiting {
			// A holder parked (on a lock, a channel...): its wait is
			// combined with the word too. A running one waits for
			// nothing; the word alone says it holds the lock.
			ls = append(ls, named[g.ID]...)
		}
		if len(ls) > 0 {
			gaddrs, taints, sums = append(gaddrs, g.addr), append(taints, ls), append(sums, g.sum)
		}
	}
	bad := make([]bool, len(addrs))
	reads := p.readGs(r, gaddrs, &p.gs[0])
	for j, gr := range reads {
		if r.err != nil || !gr.ok || p.sum(gr) != sums[j] {
			for _, k := range taints[j] {
				bad[k] = true
			}
		}
	}
	again := p.ownerWords(r, byAddr, addrs)
	changed := 0
	for i := range addrs {
		w, ok := words[i]
		if !ok {
			continue
		}
		if w2, ok2 := again[i]; bad[i] || !ok2 || w2 != w {
			delete(words, i)
			changed++
		}
	}
	if changed > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%d drop-in locks changed hands or waiters while their owner words were read: their holders are left unnamed", changed))
	}
}
