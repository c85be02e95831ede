package arena

// WaitLabel is the pprof label a goroutine carries while it waits in a
// lock's slow path; its value is the lock's name. A goroutine profile (which
// has no goroutine ids) still shows who waits for what.
const WaitLabel = "lockwatch.wait"
