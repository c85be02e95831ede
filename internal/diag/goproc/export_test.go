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

// SetTestHookOwners sets the hook Read runs after the waits were verified,
// before the drop-in locks' owner words are read (with the pid read); nil
// clears it. It must look at the pid, as SetTestHookRead's.
func SetTestHookOwners(f func(pid int)) {
	if f == nil {
		testHookOwners.Store(nil)
		return
	}
	testHookOwners.Store(&f)
}
