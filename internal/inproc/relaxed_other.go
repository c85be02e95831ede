//go:build !amd64 || race

package inproc

import "sync/atomic"

// storeCell stores a held-lock cell: a sync/atomic store under the race
// detector and on other architectures (see relaxed_amd64.go).
func storeCell(c *atomic.Pointer[State], s *State) { c.Store(s) }

// storeN stores a bucket's count of cells in use.
func storeN(n *atomic.Uint32, v uint32) { n.Store(v) }
