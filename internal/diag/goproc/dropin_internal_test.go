package goproc

import "testing"

// TestDropInWait: a goroutine waits on a drop-in mutex only when the
// innermost frame past the runtime's and sync's is one of the drop-in's
// that lock; a drop-in frame further out (a wait for lockwatch's own
// registration mutex, taken inside the drop-in's Lock) is not one.
func TestDropInWait(t *testing.T) {
	wait := []string{"runtime.gopark", "runtime.goparkunlock", "runtime.semacquire1",
		"internal/sync.runtime_SemacquireMutex", "internal/sync.(*Mutex).lockSlow", "internal/sync.(*Mutex).Lock", "sync.(*Mutex).Lock"}
	rwait := []string{"runtime.gopark", "runtime.semacquire1", "sync.runtime_SemacquireRWMutexR", "sync.(*RWMutex).RLock"}
	for _, tc := range []struct {
		name   string
		frames []string
		want   bool
	}{
		{"Lock", append(wait, dropInPkg+"(*Mutex).lockSlowPath", dropInPkg+"lockSlowPathOf", dropInPkg+"(*Mutex).Lock", "main.main"), true},
		{"Lock, records", append(wait, dropInPkg+"lockSlow", dropInPkg+"(*Mutex).lockRecords", dropInPkg+"(*Mutex).lockSlowPath", "main.main"), true},
		{"RLock, records", append(rwait, dropInPkg+"rlockSlow", dropInPkg+"(*RWMutex).rlockRecords", "main.worker"), true},
		{"RWMutex Lock inlined", append(wait, dropInPkg+"(*RWMutex).Lock", "main.main"), true},
		{"generic", append(wait, dropInPkg+"lockSlow[...]", "main.main"), true},
		{"lockwatch's registration mutex", append(wait, "github.com/lockwatch/lockwatch/internal/rt/inproc.register",
			dropInPkg+"(*Mutex).lockRecords", dropInPkg+"(*Mutex).lockSlowPath", "main.main"), false},
		{"a user's mutex, below a drop-in frame", append(wait, "main.callback", dropInPkg+"(*Mutex).lockSlowPath", "main.main"), false},
		{"a drop-in function that does not lock", append(wait, dropInPkg+"(*RWMutex).runlockRecords", "main.main"), false},
		{"a closure of Lock", append(wait, dropInPkg+"(*Mutex).Lock.func1", "main.main"), false},
		{"plain sync", append(wait, "main.main"), false},
		{"runtime only", wait, false},
		{"no frames", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Goroutine{}
			for _, f := range tc.frames {
				g.Frames = append(g.Frames, Frame{Func: f})
			}
			if got := g.dropInWait(); got != tc.want {
				t.Errorf("dropInWait of %q = %v; want %v", tc.frames, got, tc.want)
			}
		})
	}
}
