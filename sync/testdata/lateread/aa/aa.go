// Package aa read-locks RW in its init and keeps it. It imports the
// drop-in but not the probe, so Go runs its init before the probe's (its
// imports are ready first, and its path sorts before net/http's, which the
// probe waits for): in the owner mode, before the probe switches the
// records mode on.
package aa

import "github.com/lockwatch/lockwatch/sync"

// RW is read-locked by the goroutine that runs the package inits (main's).
var RW sync.RWMutex

func init() { RW.RLock() }
