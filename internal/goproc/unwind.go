package goproc

import (
	"fmt"
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
	b := p.Binary
	base, top := sp, sp+uint64(len(stack))
	word := func(a uint64) (uint64, bool) {
		if a < base || a+8 > top {
			return 0, false
		}
		return le.Uint64(stack[a-base:]), true
	}
	trap := false // the frame's pc is where a trap hit, not a return address
	for len(g.Frames) < p.opts.MaxFrames {
		f, ok := b.tab.findFunc(pc - p.bias)
		if !ok {
			g.StackNote = fmt.Sprintf("unwinding stopped at pc %#x, in no function", pc)
			return
		}
		sym := pc - p.bias
		if !trap && sym > f.entry {
			sym-- // the call instruction, not the one after it
		}
		n := len(g.Frames)
		g.Frames = b.tab.frames(f, sym, p.bias, g.Frames)
		for i := n; i < len(g.Frames); i++ {
			g.Frames[i].PC = pc
		}
		flag := f.rec[41]
		if flag&funcFlagTopFrame != 0 {
			return
		}
		if flag&funcFlagSPWrite != 0 && n > 0 {
			g.StackNote = fmt.Sprintf("unwinding stopped at %s, which switches stacks", f.name())
			return
		}
		delta, ok := f.spDelta(pc - p.bias)
		if !ok || delta < 0 {
			g.StackNote = fmt.Sprintf("unwinding stopped at %s: no frame size for pc %#x", f.name(), pc)
			return
		}
		ra := sp + uint64(delta)
		p.findDefers(g, f, sp, ra, word)
		ret, ok := word(ra)
		if !ok {
			if ra >= top && top < g.hi {
				g.StackNote = fmt.Sprintf("stack cut after %d bytes (Options.MaxStack)", len(stack))
			} else {
				g.StackNote = fmt.Sprintf("unwinding stopped at %s: its return address is outside the stack", f.name())
			}
			return
		}
		name := f.name()
		trap = name == "runtime.sigpanic" || name == "runtime.asyncPreempt" || name == "runtime.debugCallV2"
		pc, sp = ret, ra+8
		if pc == 0 {
			return
		}
	}
	g.StackNote = fmt.Sprintf("more than %d frames: cut (Options.MaxFrames)", p.opts.MaxFrames)
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
func (p *Process) findDefers(g *Goroutine, f fn, sp, ra uint64, word func(uint64) (uint64, bool)) {
	b := p.Binary
	off, ok := f.funcdata(funcdataOpenCodedDefer)
	if !ok || b.tab.gofunc == 0 {
		return
	}
	info := b.fileUpTo(b.tab.gofunc+uint64(off), 10)
	bitsOff, n := uvarint(info)
	if n <= 0 {
		return
	}
	slotsOff, m := uvarint(info[n:])
	if m <= 0 {
		return
	}
	varp := ra
	if varp > sp {
		varp -= 8 // the saved frame pointer
	}
	bw, ok := word((varp - bitsOff) &^ 7)
	if !ok {
		return
	}
	bits := uint8(bw >> (8 * ((varp - bitsOff) & 7)))
	slots := varp - slotsOff
	name := f.name()
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
		if j < 0 || wname[:j] != name {
			continue
		}
		if kind := b.unlockKind(wf); kind != "" {
			g.defers = append(g.defers, deferredUnlock{addr: recv, kind: kind, frame: printName(name), wrap: printName(wname)})
		}
	}
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
