package record

import "github.com/petermattis/goid"

// libGoid is github.com/petermattis/goid's reading of the id, the fallback
// where the offset was not found.
func libGoid() int64 { return goid.Get() }
