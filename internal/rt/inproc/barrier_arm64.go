package inproc

// storeBarrier orders the stores before it before those after it: DMB
// ISHST (quiet_arm64.s).
func storeBarrier()
