package goproc

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// An Image is what one Read found in the target.
type Image struct {
	PID       int
	GoVersion string
	Taken     time.Time
	// Goroutines are the target's goroutines (not the dead ones), by id.
	// Not to be modified: the next Read of the same Process keeps those
	// that did not change from here.
	Goroutines []Goroutine
	// Locks are the sync objects some goroutine waits for, by address.
	Locks []Lock
	// Inconsistent counts goroutines that kept changing while they were
	// read and were left out (never shown torn).
	Inconsistent int
	// Notes say what could not be read.
	Notes []string
}

// Goroutine states, as tracebacks print them.
const (
	StateRunnable = "runnable"
	StateRunning  = "running"
	StateSyscall  = "syscall"
	StateWaiting  = "waiting"
)

// A Goroutine is one goroutine of the target.
type Goroutine struct {
	ID int64
	// Status is runnable, running, syscall, waiting, preempted...
	Status string
	// WaitReason is the runtime's reason for a waiting goroutine
	// ("sync.Mutex.Lock", "chan receive"); "" otherwise.
	WaitReason string
	// WaitingAtLeast is a lower bound of how long it has waited: the
	// runtime records when a waiting goroutine was first seen blocked by a
	// garbage collection (g.waitsince, set as a GC starts), so the true
	// wait is longer, and it is unknown (WaitKnown false) until a GC
	// starts after the goroutine blocked (the runtime forces one at least
	// every 2 minutes).
	WaitingAtLeast time.Duration
	WaitKnown      bool
	// Frames are innermost first, runtime frames included; empty for a
	// running goroutine (its registers are not in memory while it runs).
	// Goroutines with the same stack share one slice: not to be modified.
	Frames []Frame
	// StackNote says why Frames are missing or cut, "" if complete.
	StackNote string
	// CreatedBy is the go statement that started it; nil for the main and
	// runtime-started goroutines. Creator is the goroutine that ran it.
	CreatedBy *Frame
	Creator   int64
	// System: started by the runtime for itself (tracebacks hide these).
	System bool
	// Waits is the sync object it is blocked on, if any.
	Waits *Wait
	// Chans are the channels (their runtime.hchan addresses) a goroutine
	// blocked on channels waits for: one for a send or a receive, one per
	// case of a select, by address, without repeats. Nil when it waits on
	// none, or when they could not be read consistently (Image.Notes says
	// how many).
	Chans []uint64

	addr       uint64 // the g's address
	waiting    uint64 // g.waiting: its sudog, if it waits on one
	waitsince  int64  // g.waitsince
	sp, lo, hi uint64
	defers     []deferredUnlock
	// What the next Read confirms it by (confirm.go): keyed hashes of its
	// g and stack as read, and of the sudogs of the channels it waits for;
	// confirmable is false when its channels could not be read.
	sum, chainSum uint64
	confirmable   bool
}

// A Wait is what a blocked goroutine waits for.
type Wait struct {
	Kind string // "sync.Mutex", "sync.RWMutex", "sync.WaitGroup", "sync.Cond", "semaphore"
	Addr uint64 // the object's address
	Read bool   // waits to read-lock an RWMutex
}

// A Lock is a sync object that goroutines wait for.
type Lock struct {
	Addr uint64
	// Kind is "sync.Mutex" or "sync.RWMutex" (a lock), or "sync.WaitGroup",
	// "sync.Cond", "semaphore" (waited for, never held). Goroutines
	// blocked on channels are not here: their Chans say which.
	Kind string
	// Name is the global variable holding it ("main.pair+8") when the
	// binary has symbols, else "".
	Name string
	// State is the decoded state word, for locks: "locked, 3 waiters".
	State string
	// Locked: a Mutex's (or an RWMutex's writer mutex's) locked bit.
	Locked bool
	// ReadersHolding is an RWMutex's readers holding it, from its counts.
	ReadersHolding int
	// WriterHolds: an RWMutex's writer holds it (its writer mutex is
	// locked and no writer waits for readers to leave).
	WriterHolds bool
	Waiters     []Waiter
	// Holders are inferred, never recorded: each says its evidence.
	Holders []Holder
	// DropIn: a mutex of the drop-in sync (its waiters wait in it). Owner
	// is then its holder from its owner word (dropin.go): recorded, exact;
	// 0 if the word names none. OwnerGone: that goroutine no longer
	// exists (it exited holding the lock).
	DropIn    bool
	Owner     int64
	OwnerGone bool
}

// A Waiter is a goroutine blocked on a Lock.
type Waiter struct {
	Goroutine int64
	Read      bool
}

// A Holder is a goroutine inferred to hold a Lock.
type Holder struct {
	Goroutine int64
	Read      bool
	// Evidence says why it is thought to hold it.
	Evidence string
}

// deferredUnlock is a pending `defer mu.Unlock()` found on a stack: the
// closure in a live frame of the function that deferred it.
type deferredUnlock struct {
	addr  uint64 // what the closure captures
	kind  string // Binary.unlockKind
	frame string // the function whose frame holds it
	wrap  string // the closure's function
}

// g statuses (runtime/runtime2.go).
const (
	gIdle      = 0
	gRunnable  = 1
	gRunning   = 2
	gSyscall   = 3
	gWaiting   = 4
	gDead      = 6
	gCopystack = 8
	gPreempted = 9
	gLeaked    = 10
	gDeadExtra = 11
	gScan      = 0x1000
)

func statusName(st uint32) string {
	switch st {
	case gIdle:
		return "idle"
	case gRunnable:
		return StateRunnable
	case gRunning:
		return StateRunning
	case gSyscall:
		return StateSyscall
	case gWaiting:
		return StateWaiting
	case gCopystack:
		return "copystack"
	case gPreempted:
		return "preempted"
	case gLeaked:
		return "leaked"
	}
	return fmt.Sprintf("status %d", st)
}

// testHookRead, set by a test, runs in Read once the list of goroutines
// is read, before the goroutines are: where the target may exec.
var testHookRead atomic.Pointer[func(pid int)]

// gRead is one read of a g and of its stack.
type gRead struct {
	raw   []byte
	stack []byte
	ok    bool
}

func (p *Process) read(ctx context.Context, r *reader) (*Image, error) {
	b := p.Binary
	img := &Image{PID: p.PID, GoVersion: b.GoVersion, Taken: time.Now()}
	if p.Core != "" {
		img.Taken = p.coreTime
	}
	now := monoNow()

	gptrs, err := p.allgs(r)
	if err != nil {
		return nil, err
	}
	if hook := testHookRead.Load(); hook != nil {
		(*hook)(p.PID)
	}
	reasons := p.waitReasons(r)
	if b.tab.gofunc == 0 && !p.opts.NoStacks {
		p.findGofunc(r)
		if b.tab.gofunc == 0 {
			img.Notes = append(img.Notes, "the binary's inline trees could not be found: inlined calls are shown as their callers' frames")
		}
	}

	img.Goroutines = make([]Goroutine, 0, len(gptrs))
	// Read the goroutines in batches: a batch's g's and stacks are read,
	// then read again and compared; goroutines that changed are read
	// again in the next round. Memory is bounded by the batch. After a
	// first Read, one copy of a goroutine that agrees with that Read's
	// is enough (confirm.go); the others are read twice.
	const batch = 1024
	scratch := &p.gs
	last := p.lastRead(reasons)
	var dead []deadG
	// Goroutines parked on channels: their channels, read between the two
	// reads of their g's and again after (chan.go).
	changedChans, longChans := 0, 0
	for i := 0; i < len(gptrs); i += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		todo := gptrs[i:min(i+batch, len(gptrs))]
		if last != nil {
			todo = p.confirm(r, last, todo, &scratch[0], reasons, now, img, &dead)
			if r.err != nil {
				return nil, r.err
			}
		}
		for attempt := 0; attempt <= p.opts.Retries && len(todo) > 0; attempt++ {
			first := p.readGs(r, todo, &scratch[0])
			var chains []*chanChain
			if !p.opts.NoChans {
				chains = p.followChans(r, todo, first, reasons)
			}
			second := p.readGs(r, todo, &scratch[1])
			if len(chains) > 0 {
				p.recheckChans(r, chains)
			}
			if r.err != nil {
				return nil, r.err
			}
			var again []uint64
			for j, addr := range todo {
				a, c := first[j], second[j]
				if !a.ok || !c.ok {
					continue // not a g (a hole in allgs), or unmapped
				}
				if !bytes.Equal(a.raw, c.raw) || !bytes.Equal(a.stack, c.stack) {
					again = append(again, addr)
					continue
				}
				g, ok := p.goroutine(addr, c, reasons, now)
				if !ok {
					dead = append(dead, deadG{addr: addr, sum: p.sum(c)})
					continue
				}
				g.sum, g.confirmable = p.sum(c), true
				if ch := chainAt(chains, j); ch != nil {
					switch {
					case ch.long:
						longChans++
						g.confirmable = false
					case ch.bad:
						changedChans++
						g.confirmable = false
					default:
						g.Chans, g.chainSum = ch.chans, p.chainSum(ch)
					}
				}
				img.Goroutines = append(img.Goroutines, g)
			}
			todo = again
		}
		img.Inconsistent += len(todo)
	}
	if img.Inconsistent > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%d goroutines kept changing while they were read (%d reads each) and are left out", img.Inconsistent, p.opts.Retries+1))
	}
	if changedChans > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%d goroutines woke while the channels they wait for were read, or their sudogs did not check: their channels are left out", changedChans))
	}
	if longChans > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%d goroutines wait in a select of more than %d channels: their channels are left out", longChans, maxCases))
	}
	p.waits(r, img)
	if r.err != nil {
		return nil, r.err
	}
	p.locks(r, img)
	sortByID(img)
	p.keep(img, reasons, dead)
	return img, nil
}

// sortByID sorts the goroutines by id: their indexes, then the goroutines
// are moved in place along the permutation's cycles (a Goroutine is large:
// sorting them moves each many times, a sorted copy is megabytes of fresh
// memory).
func sortByID(img *Image) {
	gs := img.Goroutines
	byID := func(a, b Goroutine) int { return cmp.Compare(a.ID, b.ID) }
	if slices.IsSortedFunc(gs, byID) {
		return
	}
	idx := make([]int32, len(gs)) // idx[k]: the goroutine to be at k
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(i, j int32) int { return cmp.Compare(gs[i].ID, gs[j].ID) })
	for k := range idx {
		if idx[k] < 0 {
			continue // placed, with its cycle
		}
		tmp := gs[k]
		at := k
		for int(idx[at]) != k {
			from := int(idx[at])
			gs[at] = gs[from]
			idx[at] = -1
			at = from
		}
		gs[at] = tmp
		idx[at] = -1
	}
}

// allgs returns the addresses of every g: runtime.allgptr[:allglen],
// loaded in the order the runtime's lock-free readers load them (allglen
// first), or, in a stripped binary, from a slice header in its data whose
// first element is goroutine 1.
func (p *Process) allgs(r *reader) ([]uint64, error) {
	l, err := p.allgList(r)
	if err != nil {
		return nil, err
	}
	raw, ok := r.bytes(l.ptr, int(l.n)*8)
	if !ok {
		if r.err != nil {
			return nil, r.err
		}
		return nil, fmt.Errorf("pid %d: runtime.allgs (%d goroutines at %#x) is not readable: a corrupted image", p.PID, l.n, l.ptr)
	}
	out := make([]uint64, l.n)
	for i := range out {
		out[i] = le.Uint64(raw[i*8:])
	}
	return out, nil
}

// allgList is where the list of every g is: n addresses at ptr, as read
// from the words at lenAt and ptrAt (runtime.allglen and allgptr, or the
// slice header's), which a reader of the list in parts reads again to see
// whether the runtime moved it (it grows by a new copy).
type allgList struct {
	ptrAt, lenAt uint64
	ptr, n       uint64
}

// allgList finds the list of every g (allgs).
func (p *Process) allgList(r *reader) (allgList, error) {
	b, L := p.Binary, p.Binary.layout
	var l allgList
	sl, okl := b.syms["runtime.allglen"]
	sp, okp := b.syms["runtime.allgptr"]
	if okl && okp {
		var ok1, ok2 bool
		l.lenAt, l.ptrAt = sl.Value+p.bias, sp.Value+p.bias
		l.n, ok1 = r.u64(l.lenAt)
		l.ptr, ok2 = r.u64(l.ptrAt)
		if r.err != nil {
			return l, r.err
		}
		if !ok1 || !ok2 {
			return l, fmt.Errorf("pid %d: runtime.allgptr is not readable: a corrupted image", p.PID)
		}
	} else {
		max := uint64(p.opts.MaxGoroutines)
		at, found := p.scanData(r, []string{".noptrbss", ".bss", ".noptrdata", ".data"}, 3, filter{Slice: true, MaxCap: max}, func(_ uint64, w []uint64) bool {
			a, n, c := w[0], w[1], w[2]
			if a == 0 || a%8 != 0 || n == 0 || n > c || c > max {
				return false
			}
			g0, ok := r.u64(a)
			if !ok || g0 == 0 || g0%8 != 0 {
				return false
			}
			gb, ok := r.bytes(g0, L.GSize)
			if !ok {
				return false
			}
			lo, hi := le.Uint64(gb[L.GStackLo:]), le.Uint64(gb[L.GStackHi:])
			size := hi - lo
			if le.Uint64(gb[L.GGoid:]) != 1 || hi <= lo || size < 2048 || size&(size-1) != 0 {
				return false
			}
			l.ptr, l.n = a, n
			return true
		})
		if r.err != nil {
			return l, r.err
		}
		if !found {
			return l, fmt.Errorf("pid %d: the list of goroutines (runtime.allgs) was not found in the stripped binary's data: not a Go %s runtime this reader knows", p.PID, release(b.GoVersion))
		}
		l.ptrAt, l.lenAt = at, at+8
	}
	if l.n == 0 || l.n > uint64(p.opts.MaxGoroutines) || l.ptr == 0 {
		return l, fmt.Errorf("pid %d: runtime.allglen is %d (at most %d read): a corrupted image, or a runtime not yet started", p.PID, l.n, p.opts.MaxGoroutines)
	}
	return l, nil
}

// waitReasons returns the runtime's names of wait reasons: read from the
// target (runtime.waitReasonStrings) when the binary names it, else the
// table's for its release.
func (p *Process) waitReasons(r *reader) []string {
	if s, ok := p.Binary.syms["runtime.waitReasonStrings"]; ok && s.Size/16 <= 256 {
		n := int(s.Size / 16)
		hdr, ok := r.bytes(s.Value+p.bias, n*16)
		if ok {
			ps := make([]Piece, n)
			for i := range ps {
				a, l := le.Uint64(hdr[i*16:]), le.Uint64(hdr[i*16+8:])
				if l > 256 {
					l = 0
				}
				ps[i] = Piece{Addr: a, Buf: make([]byte, l)}
			}
			if r.pieces(ps) == nil {
				out := make([]string, n)
				for i, pc := range ps {
					if pc.OK {
						out[i] = string(pc.Buf)
					}
				}
				return out
			}
		}
	}
	return p.Binary.layout.WaitReasons
}

// findGofunc finds moduledata.gofunc in a binary without symbols: the
// module data is the word in the target's .noptrdata that points to the
// pclntab's header. It takes moduledata.text from it too: the address the
// pclntab's entry offsets count from, which is not the start of .text in
// a binary linked by gcc (-linkmode=external), whose C start-up code comes
// first.
func (p *Process) findGofunc(r *reader) {
	b := p.Binary
	pcln := b.f.Section(".gopclntab")
	if pcln == nil {
		return
	}
	want := pcln.Addr + p.bias
	off, toff := b.layout.ModGofunc, b.layout.ModText
	if !modOffsetsOK(off, toff) {
		return
	}
	if want == 0 {
		return
	}
	p.scanData(r, []string{".go.module", ".noptrdata", ".data"}, max(off, toff)/8+1, filter{First: want}, func(_ uint64, w []uint64) bool {
		if w[0] != want {
			return false
		}
		gf := w[off/8] - p.bias
		if b.section(gf, 1) == nil {
			return false
		}
		b.tab.gofunc = gf
		if text := w[toff/8] - p.bias; b.section(text, 1) == b.text {
			b.tab.textStart = text
		}
		return true
	})
}

// maxModOff bounds the offsets of moduledata's fields read here (about
// 600 bytes long in the releases known): a layout from a hostile binary's
// DWARF may give any number.
const maxModOff = 4096

// modOffsetsOK tells whether moduledata's gofunc and text offsets can be
// used: word-aligned, inside the struct's bound, and not its first word
// (pcHeader).
func modOffsetsOK(off, toff int) bool {
	return off > 0 && toff > 0 && off%8 == 0 && toff%8 == 0 && off < maxModOff && toff < maxModOff
}

// gScratch is the memory one read of a batch of goroutines reuses from
// batch to batch (a Read keeps two: the read and its check), so that a
// read of 100,000 goroutines allocates a batch's worth, not the whole.
type gScratch struct {
	out    []gRead
	ps     []Piece
	runs   []gRun
	order  []int
	slab   []byte // the g's, run by run
	stacks []byte
	sps    []Piece
	who    []int
	sizes  []uint64
}

// A gRun is g's close together in memory, read as one piece: g's of one
// size class share spans, so most lie a few bytes apart.
type gRun struct {
	start, end uint64 // [start, end)
	first, n   int    // their indexes in gScratch.order
}

// Runs of g's read as one piece: at most runGap bytes that are not a g
// between two of them, runMax bytes in all.
const (
	runGap = 512
	runMax = 64 << 10
)

// grow returns b with length n, reusing its array when it is large enough.
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// readGs reads the g's at addrs and the used parts of their stacks, into
// sc's memory (valid until sc's next use).
func (p *Process) readGs(r *reader, addrs []uint64, sc *gScratch) []gRead {
	L := p.Binary.layout
	gsize := uint64(L.GSize)
	out := grow(sc.out, len(addrs))
	clear(out)
	sc.out = out
	// The g's by address, in runs.
	order := sc.order[:0]
	for i, a := range addrs {
		if a != 0 && a%8 == 0 && a+gsize > a {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(i, j int) int { return cmp.Compare(addrs[i], addrs[j]) })
	sc.order = order
	runs := sc.runs[:0]
	var total uint64
	for k, i := range order {
		a := addrs[i]
		if n := len(runs); n > 0 && a <= runs[n-1].end+runGap && a+gsize-runs[n-1].start <= runMax {
			runs[n-1].end = max(runs[n-1].end, a+gsize)
			runs[n-1].n++
			continue
		}
		if n := len(runs); n > 0 {
			total += runs[n-1].end - runs[n-1].start
		}
		runs = append(runs, gRun{start: a, end: a + gsize, first: k, n: 1})
	}
	if n := len(runs); n > 0 {
		total += runs[n-1].end - runs[n-1].start
	}
	sc.runs = runs
	slab := grow(sc.slab, int(total))
	sc.slab = slab
	ps := grow(sc.ps, len(runs))
	sc.ps = ps
	for k, run := range runs {
		n := run.end - run.start
		ps[k] = Piece{Addr: run.start, Buf: slab[:n:n]}
		slab = slab[n:]
	}
	if r.pieces(ps) != nil {
		return out
	}
	// A run not mapped whole (a g next to a hole): its g's one by one.
	var alone []Piece
	for k, run := range runs {
		if ps[k].OK {
			for _, i := range order[run.first : run.first+run.n] {
				off := addrs[i] - run.start
				out[i] = gRead{raw: ps[k].Buf[off : off+gsize : off+gsize], ok: true}
			}
			continue
		}
		for _, i := range order[run.first : run.first+run.n] {
			alone = append(alone, Piece{Addr: addrs[i], Buf: make([]byte, gsize)})
		}
	}
	if len(alone) > 0 {
		if r.pieces(alone) != nil {
			return out
		}
		byAddr := make(map[uint64]int, len(alone))
		for i, a := range addrs {
			byAddr[a] = i
		}
		for _, pc := range alone {
			if pc.OK {
				out[byAddr[pc.Addr]] = gRead{raw: pc.Buf, ok: true}
			}
		}
	}
	sps, who, sizes := sc.sps[:0], sc.who[:0], sc.sizes[:0]
	total = 0
	for i := range out {
		if !out[i].ok {
			continue
		}
		g := out[i].raw
		st := le.Uint32(g[L.GStatus:]) &^ gScan
		if st == gDead || st == gDeadExtra || st == gIdle || st == gRunning || p.opts.NoStacks {
			continue
		}
		sp, lo, hi := p.regs(g, st)
		if sp < lo || sp >= hi || hi-lo > 1<<30 {
			continue
		}
		n := min(hi-sp, uint64(p.opts.MaxStack))
		sps = append(sps, Piece{Addr: sp})
		sizes = append(sizes, n)
		total += n
		who = append(who, i)
	}
	sc.sps, sc.who, sc.sizes = sps, who, sizes
	stacks := grow(sc.stacks, int(total))
	sc.stacks = stacks
	for k, n := range sizes {
		sps[k].Buf, stacks = stacks[:n:n], stacks[n:]
	}
	if r.pieces(sps) != nil {
		return out
	}
	for k, i := range who {
		if sps[k].OK {
			out[i].stack = sps[k].Buf
		}
	}
	return out
}

// regs returns where a g's stack is to be unwound from: its saved sp,
// and its stack's bounds.
func (p *Process) regs(g []byte, st uint32) (sp, lo, hi uint64) {
	L := p.Binary.layout
	sp = le.Uint64(g[L.GSchedSP:])
	if st == gSyscall {
		sp = le.Uint64(g[L.GSyscallSP:])
	}
	return sp, le.Uint64(g[L.GStackLo:]), le.Uint64(g[L.GStackHi:])
}

// goroutine decodes one consistent read of a g.
func (p *Process) goroutine(addr uint64, gr gRead, reasons []string, now int64) (Goroutine, bool) {
	b, L := p.Binary, p.Binary.layout
	raw := gr.raw
	st := le.Uint32(raw[L.GStatus:]) &^ gScan
	if st == gDead || st == gDeadExtra || st == gIdle {
		return Goroutine{}, false
	}
	g := Goroutine{ID: int64(le.Uint64(raw[L.GGoid:])), Status: statusName(st), addr: addr}
	if st == gWaiting {
		g.waitsince = int64(le.Uint64(raw[L.GWaitsince:]))
		if i := int(raw[L.GWaitReas]); i < len(reasons) && reasons[i] != "" {
			g.WaitReason = reasons[i]
		} else if i != 0 {
			g.WaitReason = fmt.Sprintf("wait reason %d", i)
		}
		g.waiting = le.Uint64(raw[L.GWaiting:])
		p.waited(&g, now)
	}
	if start := le.Uint64(raw[L.GStartPC:]); start != 0 {
		if f, ok := b.tab.findFunc(start - p.bias); ok {
			name := f.name()
			// As the runtime's isSystemGoroutine, with the finalizer and
			// cleanup goroutines counted as the runtime's unless they run
			// (then they run user code).
			g.System = strings.HasPrefix(name, "runtime.") && name != "runtime.main" && name != "runtime.handleAsyncEvent" &&
				!((name == "runtime.runFinalizers" || name == "runtime.runCleanups") && st != gWaiting)
		}
	}
	if gopc := le.Uint64(raw[L.GGoPC:]); gopc != 0 && g.ID != 1 {
		if c := p.creator(gopc); c != nil {
			g.CreatedBy = c
			g.Creator = int64(le.Uint64(raw[L.GParent:]))
		}
	}
	switch {
	case p.opts.NoStacks:
		return g, true
	case st == gRunning:
		g.StackNote = "running: its stack cannot be read without stopping it"
		return g, true
	case gr.stack == nil:
		g.StackNote = "its stack could not be read"
		return g, true
	}
	sp, lo, hi := p.regs(raw, st)
	g.sp, g.lo, g.hi = sp, lo, hi
	pc := le.Uint64(raw[L.GSchedPC:])
	if st == gSyscall {
		pc = le.Uint64(raw[L.GSyscallPC:])
	}
	p.unwind(&g, pc, sp, gr.stack)
	return g, true
}

// creator is the frame of the go statement at gopc (its innermost inlined
// call), once per process: goroutines started by one statement share it.
func (p *Process) creator(gopc uint64) *Frame {
	if c, ok := p.creators[gopc]; ok {
		return c
	}
	var c *Frame
	b := p.Binary
	if f, ok := b.tab.findFunc(gopc - p.bias); ok {
		tpc := gopc - p.bias
		if tpc > f.entry {
			tpc--
		}
		fr := b.tab.frames(f, tpc, p.bias, nil)
		c = &fr[0]
		c.PC = gopc
	}
	if p.creators == nil {
		p.creators = map[uint64]*Frame{}
	}
	if len(p.creators) < maxPCInfos {
		p.creators[gopc] = c
	}
	return c
}

// Hidden reports whether tracebacks leave out frames of function name by
// default: the runtime's own unexported functions (runtime.showfunc).
func Hidden(name string) bool {
	rest, ok := strings.CutPrefix(name, "runtime.")
	if !ok {
		return false
	}
	// Exported runtime functions (runtime.Goexit, runtime.Gosched) show.
	return rest == "" || !(rest[0] >= 'A' && rest[0] <= 'Z')
}

// Calls reports whether a frame of g is in the function name.
func (g *Goroutine) Calls(name string) bool { return g.calls(name) }
