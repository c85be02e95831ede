// Package testbound holds the one bound of the tests' waits for something
// that must happen: a goroutine to block, a deadlock to show, a process to
// register, a child to answer. A test polls until it happens and gives up
// past the bound; the bound only stops a broken test from hanging, so it is
// generous, and no test's outcome depends on it (no test asserts a time).
package testbound

import "time"

// ProbablyStillBlocked is how long a test waits for something that must
// happen before it gives up: if it has not happened by then, it probably
// never will.
const ProbablyStillBlocked = 10 * time.Second
