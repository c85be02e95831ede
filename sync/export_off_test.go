//go:build nolockwatch || !(amd64 || arm64)

package sync

// SetRecords does nothing where the types are sync's own: there is one
// mode, sync's, for the tests that run in both (hammer_test.go).
func SetRecords(on bool) bool { return false }
