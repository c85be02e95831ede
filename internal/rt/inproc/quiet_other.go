//go:build !amd64 && !arm64

package inproc

import (
	"sync/atomic"
	"unsafe"
)

// Where the drop-in records nothing (no fast path: sync/off.go), these are
// only reached by readers of an empty table; sync/atomic is enough.

func cas64(p *uint64, old, new uint64) bool { return atomic.CompareAndSwapUint64(p, old, new) }

func add64(p *uint64, d uint64) uint64 { return atomic.AddUint64(p, d) }

func storeBarrier() { atomic.AddUint64((*uint64)(unsafe.Pointer(&barrierWord)), 0) }

func loadBarrier() { atomic.LoadUint64(&barrierWord) }

var barrierWord uint64

func cas32(p *uint32, old, new uint32) bool { return atomic.CompareAndSwapUint32(p, old, new) }
