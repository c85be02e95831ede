// Package goproc reads the goroutines and the sync waits of a Go program
// that was not prepared for it, from outside: a live process, read with
// process_vm_readv(2) while it keeps running (it is never stopped, traced
// or written to), or a core file with its binary.
//
//	p, err := goproc.Attach(pid, goproc.Options{})
//	if err != nil { ... } // not Go, permission, a release it cannot read: one line
//	defer p.Close()
//	img, err := p.Read(ctx)
//	for _, g := range img.Goroutines { ... } // id, state, wait reason, frames, creator
//	for _, l := range img.Locks { ... }      // mutexes waited for: state word, waiters, inferred holders
//
// # What it reads
//
// The binary (/proc/PID/exe, so a binary deleted or replaced on disk is
// still the one running) gives the runtime's struct layouts (DWARF, or a
// table per Go release for stripped binaries: layouts.go), the symbols of
// runtime.allgs and friends (or a bounded scan of .bss for a stripped
// binary), and the pclntab, decoded here with its inline tree so that
// inlined calls come out as frames of their own, and its pc-sp tables, with
// which stacks are unwound as the runtime unwinds them (frame pointers alone
// lose a frame of a goroutine preempted in a leaf function).
//
// # Reads that race the running target
//
// The target runs while it is read. Each goroutine's g and the used part of
// its stack are read, then read again; the goroutine is kept only when both
// copies agree byte for byte (comparing the g alone is not enough: a
// goroutine can wake, run and park again at the same pc and sp while its
// stack was read). A goroutine that keeps changing is retried, then left
// out with a count in Image.Inconsistent; it is never shown torn. A sudog
// is trusted only when its back-pointer names its goroutine.
//
// # The holder of a sync.Mutex
//
// The runtime records who waits on a semaphore, not who holds a mutex. A
// holder is named only with evidence, and labelled as inferred: a live frame
// of the function that wrote `defer mu.Unlock()` holds the deferred call's
// closure, which captures the mutex's address (the closure's code is the
// function's deferwrapN, whose call target is checked to be Unlock or
// RUnlock of sync). A stack word that merely equals the address is not
// evidence (it gave false holders and missed true ones).
//
// # Bounds
//
// The target is not trusted: every pointer, length and count read from it is
// bounded (Options), each read is a bounded batch, and a corrupted image
// gives an error or a note, never a panic or an unbounded loop.
package goproc
