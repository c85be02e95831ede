//go:build amd64 || arm64

package inproc

import "unsafe"

// The records' sizes where they are written (sync records on amd64 and
// arm64 only): whole cache lines.
var (
	_ [0]byte = [unsafe.Sizeof(holdSlot{}) - 64]byte{}
	_ [0]byte = [unsafe.Sizeof(waitSlot{}) - 320]byte{}
	_ [0]byte = [unsafe.Sizeof(readSlot{}) - 64]byte{}
	_ [0]byte = [unsafe.Sizeof(nameSlot{}) - 128]byte{}
	_ [0]byte = [unsafe.Sizeof(Bucket{}) - 64]byte{}
)
