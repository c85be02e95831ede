package goproc

// SetTestHookRead sets the hook Read runs once the list of goroutines is
// read; nil clears it.
func SetTestHookRead(f func(pid int)) { testHookRead = f }
