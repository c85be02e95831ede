//go:build nolockwatch || !(amd64 || arm64)

package sync

import gosync "sync"

// With the nolockwatch build tag the package is the standard library's
// sync: Mutex and RWMutex are aliases of its types, nothing is recorded,
// and nothing costs more.
type (
	// Mutex is sync.Mutex (build tag nolockwatch).
	Mutex = gosync.Mutex
	// RWMutex is sync.RWMutex (build tag nolockwatch).
	RWMutex = gosync.RWMutex
)

// SetName does nothing under the nolockwatch build tag.
func SetName[M *Mutex | *RWMutex](m M, name string) {}

// Enabled reports whether this build records holders: false under the
// nolockwatch build tag.
const Enabled = false
