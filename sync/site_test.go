//go:build !nolockwatch && (amd64 || arm64)

package sync_test

import (
	"strings"
	"testing"

	gosync "sync"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

// TestSites: in the records mode, a holder's and a reader's site is the
// program's call of Lock or RLock (PC: the function and line that called
// it) and the call of that function (PC2: its caller), whichever way Lock
// was called: inlined, through an interface, a method value, a generic
// function (whose caller is the instantiation's wrapper, as in a stack),
// RLocker, TryLock.
func TestSites(t *testing.T) {
	defer lwsync.SetRecords(lwsync.SetRecords(true))
	type lockFn func(mu *lwsync.Mutex, rw *lwsync.RWMutex) (line int)
	const caller = "TestSites.func1"
	cases := []struct {
		name   string
		rw     bool // the RWMutex is held (for reading if read)
		read   bool
		lock   lockFn
		caller string // PC2's function
	}{
		{"Lock inlined", false, false, siteDirect, caller},
		{"Lock through sync.Locker", false, false, siteLocker, caller},
		{"Lock through a method value", false, false, siteMethodValue, caller},
		{"Lock in a generic function", false, false, siteGeneric[*lwsync.Mutex], "siteGeneric[...]"},
		{"TryLock", false, false, siteTryLock, caller},
		{"RWMutex.Lock", true, false, siteRWLock, caller},
		{"RWMutex.Lock through sync.Locker", true, false, siteRWLocker, caller},
		{"RLock inlined", true, true, siteRLock, caller},
		{"RLock through an interface", true, true, siteRLockIface, caller},
		{"RLocker", true, true, siteRLocker, caller},
		{"TryRLock", true, true, siteTryRLock, caller},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu lwsync.Mutex
			var rw lwsync.RWMutex
			want, callLine := c.lock(&mu, &rw), line()
			var pc, pc2 uintptr
			switch {
			case c.read:
				l := lockOf(t, &rw)
				if len(l.Readers) != 1 {
					t.Fatalf("readers %+v; want 1", l.Readers)
				}
				pc, pc2 = l.Readers[0].PC, l.Readers[0].PC2
				rw.RUnlock()
			case c.rw:
				l := lockOf(t, &rw)
				pc, pc2 = l.Holder.PC, l.Holder.PC2
				rw.Unlock()
			default:
				l := lockOf(t, &mu)
				pc, pc2 = l.Holder.PC, l.Holder.PC2
				mu.Unlock()
			}
			f, f2 := frameOf(pc), frameOf(pc2)
			if !strings.Contains(f.Function, "sync_test.site") || f.Line != want {
				t.Errorf("site %s:%d; want a sync_test.site function, line %d", f.Function, f.Line, want)
			}
			if !strings.HasSuffix(f2.Function, c.caller) || c.caller == caller && f2.Line != callLine {
				t.Errorf("caller %s:%d; want %s (line %d)", f2.Function, f2.Line, c.caller, callLine)
			}
		})
	}
}

// Each site function locks and returns the line where it did.

//go:noinline
func siteDirect(mu *lwsync.Mutex, _ *lwsync.RWMutex) int {
	mu.Lock()
	return line() - 1
}

//go:noinline
func siteLocker(mu *lwsync.Mutex, _ *lwsync.RWMutex) int {
	var l gosync.Locker = mu
	l.Lock()
	return line() - 1
}

//go:noinline
func siteMethodValue(mu *lwsync.Mutex, _ *lwsync.RWMutex) int {
	lock := mu.Lock
	lock()
	return line() - 1
}

//go:noinline
func siteGeneric[L gosync.Locker](mu *lwsync.Mutex, _ *lwsync.RWMutex) int {
	var l L = any(mu).(L)
	l.Lock()
	return line() - 1
}

//go:noinline
func siteTryLock(mu *lwsync.Mutex, _ *lwsync.RWMutex) int {
	mu.TryLock()
	return line() - 1
}

//go:noinline
func siteRWLock(_ *lwsync.Mutex, rw *lwsync.RWMutex) int {
	rw.Lock()
	return line() - 1
}

//go:noinline
func siteRWLocker(_ *lwsync.Mutex, rw *lwsync.RWMutex) int {
	var l gosync.Locker = rw
	l.Lock()
	return line() - 1
}

//go:noinline
func siteRLock(_ *lwsync.Mutex, rw *lwsync.RWMutex) int {
	rw.RLock()
	return line() - 1
}

//go:noinline
func siteRLockIface(_ *lwsync.Mutex, rw *lwsync.RWMutex) int {
	var l interface{ RLock() } = rw
	l.RLock()
	return line() - 1
}

//go:noinline
func siteRLocker(_ *lwsync.Mutex, rw *lwsync.RWMutex) int {
	rw.RLocker().Lock()
	return line() - 1
}

//go:noinline
func siteTryRLock(_ *lwsync.Mutex, rw *lwsync.RWMutex) int {
	rw.TryRLock()
	return line() - 1
}
