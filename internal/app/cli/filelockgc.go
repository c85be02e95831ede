package cli

import (
	"math"
	"runtime/debug"
	"sync"
)

// A file-lock attach allocates tens of megabytes that live a moment (a
// table of 10,000 locks parsed at each of its two reads, the tables of the
// Go binaries whose goroutines it reads), and the collections the default
// target asks for cost a tenth of its CPU. fewerCollections raises the
// target for the time of the attach, under a soft memory limit that keeps
// the heap bounded when the lock table is huge (the collector works harder
// near it); a limit set by GOMEMLIMIT is kept.
const (
	attachGCPercent   = 400
	attachMemoryLimit = 512 << 20
)

var gcTuning struct {
	sync.Mutex
	users          int
	percent, limit int64
}

// fewerCollections raises the collector's target until the function it
// returns is called; concurrent attaches share one raise.
func fewerCollections() (restore func()) {
	gcTuning.Lock()
	defer gcTuning.Unlock()
	if gcTuning.users == 0 {
		gcTuning.percent = int64(debug.SetGCPercent(attachGCPercent))
		gcTuning.limit = debug.SetMemoryLimit(-1)
		if gcTuning.percent < 0 || gcTuning.percent > attachGCPercent {
			debug.SetGCPercent(int(gcTuning.percent)) // off, or already higher: leave it
		}
		if gcTuning.limit == math.MaxInt64 {
			debug.SetMemoryLimit(attachMemoryLimit)
		}
	}
	gcTuning.users++
	return func() {
		gcTuning.Lock()
		defer gcTuning.Unlock()
		if gcTuning.users--; gcTuning.users == 0 {
			debug.SetGCPercent(int(gcTuning.percent))
			debug.SetMemoryLimit(gcTuning.limit)
		}
	}
}
