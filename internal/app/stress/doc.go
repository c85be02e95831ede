// Package stress is lockwatch's reliability suite: long, heavy tests that
// run only with the stress build tag (make stress), not in make test.
//
//   - The kill storm: 8 processes take 16 cross-process locks under the
//     Recover policy while 500 SIGKILLs hit them; mutual exclusion must never
//     break, every lock held at a kill must be recovered or reported, and
//     lockwatch attach, run concurrently, must report no false finding.
//   - The churn: 100,000 sequential process restarts in one run, and 100,000
//     Open/Close pairs in one process.
//   - The hostile-arena generator: corrupted arenas fed to lockwatch attach
//     and ps, each of which must end with a clear error, never a panic or a
//     hang.
//
// The figures it prints are in docs/reliability.md. It runs the static
// build (CGO_ENABLED=0), as lockwatch ships: a cgo binary has no robust
// list, which would change the mechanism under test; so it does not run
// under the race detector, which needs cgo.
//
//	make stress
//	CGO_ENABLED=0 go test -tags stress -count=1 -v -timeout 15m ./internal/app/stress
package stress
