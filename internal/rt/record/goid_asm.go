//go:build amd64 || arm64

package record

// gword returns the 8-byte word at offset off of the current goroutine's g
// (goid_amd64.s, goid_arm64.s), which lives as long as its goroutine runs. off must be
// below goidScan.
//
//go:noescape
func gword(off uintptr) int64

const haveGetg = true
