//go:build !nolockwatch && (amd64 || arm64)

package sync

import "unsafe"

// IDOf is the id of a lock in inproc's snapshots: its address.
func IDOf[M *Mutex | *RWMutex](m M) uint64 { return uint64(uintptr(unsafe.Pointer(m))) }
