//go:build !nolockwatch

package sync

import "github.com/lockwatch/lockwatch/internal/inproc"

// StateOf and StateOfRW expose the table state of a lock to the tests.
func StateOf(m *Mutex) *inproc.State      { return &m.st }
func StateOfRW(rw *RWMutex) *inproc.State { return &rw.st }
