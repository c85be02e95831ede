package goproc

// SetTestHookRead sets the hook Read runs once the list of goroutines is
// read (with the pid read); nil clears it. Tests that read other targets
// at the same time run it too: it must look at the pid.
func SetTestHookRead(f func(pid int)) {
	if f == nil {
		testHookRead.Store(nil)
		return
	}
	testHookRead.Store(&f)
}
