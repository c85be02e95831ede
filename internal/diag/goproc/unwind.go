package goproc

import (
	"fmt"
	"slices"
	"strings"
)

// _func flags (internal/abi.FuncFlag).
const (
	funcFlagTopFrame = 1 << 0
	funcFlagSPWrite  = 1 << 1
)

// unwind walks g's stack from pc and sp as the runtime's unwinder does:
// each frame's size at its pc comes from the function's pc-sp table, its
// return address is the word above its frame. Frame pointers are not
// followed: a function preempted before it set its own up (or a leaf that
// never does) would hide its caller. Every word comes from the stack bytes
// already read and validated; nothing more is read from the target.
func (p *Process) unwind(g *Goroutine, pc, sp uint64, stack []byte) {
	base, top := sp, sp+uint64(len(stack))
	word := func(a uint64) (uint64, bool) {
		if a < base || a+8 > top {
			return 0, false
		}
		return le.Uint64(stack[a-base:]), true
	}
	trap := false // the frame's pc is where a trap hit, not a return address
	// Unwound into a buffer reused from goroutine to goroutine, then
	// copied at its size: 100,000 goroutines keep no spare capacity.
	g.Frames = p.scratch[:0]
	defer func() {
		p.scratch = g.Frames[:0]
		g.Frames = slices.Clone(g.Frames)
	}()
	for n := 0; len(g.Frames) < p.opts.MaxFrames; n++ {
		in := p.pcInfo(pc, trap)
		if !in.ok {
			g.StackNote = fmt.Sprintf("unwinding stopped at pc %#x, in no function", pc)
			return
		}
		g.Frames = append(g.Frames, in.frames...)
		if in.flag&funcFlagTopFrame != 0 {
			return
		}
		if in.flag&funcFlagSPWrite != 0 && n > 0 {
			g.StackNote = fmt.Sprintf("unwinding stopped at %s, which switches stacks", in.name)
			return
		}
		if !in.deltaOK {
			g.StackNote = fmt.Sprintf("unwinding stopped at %s: no frame size for pc %#x", in.name, pc)
			return
		}
		ra := sp + uint64(in.delta)
		if in.defers != nil {
			p.findDefers(g, in, sp, ra, word)
		}
		ret, ok := word(ra)
		if !ok {
			if ra >= top && top < g.hi {
				g.StackNote = fmt.Sprintf("stack cut after %d bytes (Options.MaxStack)", len(stack))
			} else {
				g.StackNote = fmt.Sprintf("unwinding stopped at %s: its return address is outside the stack", in.name)
			}
			return
		}
		trap = in.name == "runtime.sigpanic" || in.name == "runtime.asyncPreempt" || in.name == "runtime.debugCallV2"
		pc, sp = ret, ra+8
		if pc == 0 {
			return
		}
	}
	g.StackNote = fmt.Sprintf("more than %d frames: cut (Options.MaxFrames)", p.opts.MaxFrames)
}

// pcInfo is what unwinding needs of one pc, computed once per process:
// goroutines parked in the same places share it.
type pcInfo struct {
	ok      bool
	f       fn
	name    string
	frames  []Frame // with PC set; shared, never modified
	flag    uint8
	delta   int32
	deltaOK bool
	defers  *openDefers // the function's open-coded defers; nil if none
}

// openDefers is where a function's frame keeps its open-coded defers:
// offsets below its varp of the defer bits and of the closure slots.
type openDefers struct{ bitsOff, slotsOff uint64 }

// maxPCInfos bounds the cache of pcInfo.
const maxPCInfos = 1 << 18

func (p *Process) pcInfo(pc uint64, trap bool) *pcInfo {
	key := pc << 1
	if trap {
		key |= 1
	}
	if in, ok := p.pcs[key]; ok {
		return in
	}
	in := &pcInfo{}
	b := p.Binary
	if f, ok := b.tab.findFunc(pc - p.bias); ok {
		sym := pc - p.bias
		if !trap && sym > f.entry {
			sym-- // the call instruction, not the one after it
		}
		in.ok, in.f, in.name = true, f, f.name()
		in.frames = b.tab.frames(f, sym, p.bias, nil)
		for i := range in.frames {
			in.frames[i].PC = pc
		}
		in.flag = f.rec[41]
		d, ok := f.spDelta(pc - p.bias)
		in.delta, in.deltaOK = d, ok && d >= 0
		in.defers = p.openDefers(f)
	}
	if p.pcs == nil {
		p.pcs = map[uint64]*pcInfo{}
	}
	if len(p.pcs) < maxPCInfos {
		p.pcs[key] = in
	}
	return in
}

// funcdataOpenCodedDefer is FUNCDATA_OpenCodedDeferInfo.
const funcdataOpenCodedDefer = 4

// findDefers records the pending deferred unlocks of the frame of f whose
// return address is at ra, exactly as a panic would find them to run them
// (runtime/panic.go, initOpenCodedDefers): the function's open-coded defer
// info gives where its frame keeps the bits of the defers that ran their
// defer statement and not yet their call, and the slots of their closures.
// A pending closure whose code is f's own deferwrap calling sync's Unlock
// or RUnlock captures the lock it will release. Defers that are not
// open-coded (a defer in a loop) are not seen.
func (p *Process) findDefers(g *Goroutine, in *pcInfo, sp, ra uint64, word func(uint64) (uint64, bool)) {
	b := p.Binary
	varp := ra
	if varp > sp {
		varp -= 8 // the saved frame pointer
	}
	at := varp - in.defers.bitsOff
	bw, ok := word(at &^ 7)
	if !ok {
		return
	}
	bits := uint8(bw >> (8 * (at & 7)))
	slots := varp - in.defers.slotsOff
	for i := uint64(0); i < 8; i++ {
		if bits&(1<<i) == 0 {
			continue
		}
		fv, ok := word(slots + i*8)
		if !ok || fv == 0 {
			continue
		}
		code, ok1 := word(fv)
		recv, ok2 := word(fv + 8)
		if !ok1 || !ok2 || recv == 0 {
			continue // a closure off the stack: not read
		}
		wf, ok := b.tab.findFunc(code - p.bias)
		if !ok || wf.entry != code-p.bias {
			continue
		}
		wname := wf.name()
		j := strings.LastIndex(wname, ".deferwrap")
		if j < 0 || wname[:j] != in.name {
			continue
		}
		if kind := b.unlockKind(wf); kind != "" {
			g.defers = append(g.defers, deferredUnlock{addr: recv, kind: kind, frame: printName(in.name), wrap: printName(wname)})
		}
	}
}

// openDefers reads f's open-coded defer info (FUNCDATA_OpenCodedDeferInfo:
// two varints), once per function.
func (p *Process) openDefers(f fn) *openDefers {
	if d, ok := p.defers[f.entry]; ok {
		return d
	}
	var d *openDefers
	b := p.Binary
	if off, ok := f.funcdata(funcdataOpenCodedDefer); ok && b.tab.gofunc != 0 {
		info := b.fileUpTo(b.tab.gofunc+uint64(off), 10)
		if bitsOff, n := uvarint(info); n > 0 {
			if slotsOff, m := uvarint(info[n:]); m > 0 {
				d = &openDefers{bitsOff: bitsOff, slotsOff: slotsOff}
			}
		}
	}
	if p.defers == nil {
		p.defers = map[uint64]*openDefers{}
	}
	if len(p.defers) < maxPCInfos {
		p.defers[f.entry] = d
	}
	return d
}

// uvarint decodes the runtime's varint (readvarint), 7 bits a byte.
func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 5; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, -1
}
