package arena

import (
	"sync/atomic"
	"unsafe"
)

// nameHash is 32-bit FNV-1a of the name (docs/registry-format.md).
func NameHash(name string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return h
}

// indexEntry returns entry i of the name index.
func (a *Arena) IndexEntry(i uint32) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Add(a.base, a.G.indexOff+uint64(i)*4))
}
