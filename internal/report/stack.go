package report

import (
	"strings"

	"github.com/lockwatch/lockwatch/stackdump"
)

// machinery is the code between a program's call and the lock: frames in it
// are skipped to find the call site.
var machinery = []string{
	"github.com/lockwatch/lockwatch/lockreg.",
	"github.com/lockwatch/lockwatch/probe.",
	"github.com/lockwatch/lockwatch/stackdump.",
	"runtime.",
	"internal/",
	"sync.",
	"syscall.",
	"golang.org/x/sys/",
}

func isMachinery(fn string) bool {
	for _, p := range machinery {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// callSite returns the innermost frame of a program's own code: where it
// called into the lock.
func callSite(fs []stackdump.Frame) (stackdump.Frame, bool) {
	for _, f := range fs {
		if !isMachinery(f.Func) {
			return f, true
		}
	}
	if len(fs) > 0 {
		return fs[0], true
	}
	return stackdump.Frame{}, false
}
