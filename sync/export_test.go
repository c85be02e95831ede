//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
)

// IDOf is the id of a lock in inproc's snapshots: its address.
func IDOf[M *Mutex | *RWMutex](m M) uint64 { return uint64(uintptr(unsafe.Pointer(m))) }

// The package's tests run in the records mode, but for those that ask for
// the owner mode (SetRecords) or run a child process.
func init() {
	if !inproc.RecordsMode() && !inproc.OwnerModeAsked() {
		SetRecords(true)
	}
}

// SetRecords switches the mode (records or owner) and returns the one
// before: only while no lock of the package is held, as at init.
func SetRecords(on bool) bool {
	old := records
	records = on
	configure()
	return old
}

// Records reports the mode: true for the records mode.
func Records() bool { return records }

// Owner returns m's owner word.
func Owner[M *Mutex | *RWMutex](m M) int64 {
	switch m := any(m).(type) {
	case *Mutex:
		return m.owner
	case *RWMutex:
		return m.owner
	}
	return 0
}

// SetGoidOffset sets the goroutine id's offset in g that the package found
// (0: not found, as with a Go release it does not know) and returns the one
// before: only while no lock of the package is held, as at init.
func SetGoidOffset(off uintptr) uintptr {
	old := goidOff
	goidOff = off
	configure()
	return old
}
