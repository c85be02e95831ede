package record

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// Goroutine ids. The runtime keeps a goroutine's id in its g, the structure
// the TLS slot (amd64) points to; its offset changes between Go releases.
// Rather than a table of offsets per release (go-deadlock's goroutine-id
// hacks broke on Go 1.23 and 1.25, its issues #35 and #45), the offset is
// found at start-up: the one 8-byte word of g that equals the id parsed from
// runtime.Stack in each of five goroutines. If there is not exactly one such
// word, ids come from github.com/petermattis/goid if it agrees with the
// parsed ids, else from parsing runtime.Stack (15 us): slower, never wrong.

// goidScan bounds the search: the runtime's g is larger than this, so the
// scan never reads past it.
const goidScan = 256

var goidState = sync.OnceValues(func() (offset uintptr, how goidMethod) {
	if off, ok := findGoidOffset(); ok {
		goidOffset.Store(off + 1)
		return off, goidFromG
	}
	if checkGoid(func() int64 { return libGoid() }) {
		return 0, goidFromLib
	}
	return 0, goidParsed
})

type goidMethod int

const (
	goidFromG goidMethod = iota + 1
	goidFromLib
	goidParsed
)

// goidOffset is the verified offset + 1 once goidState found it, 0 before
// and when ids come another way: Goid's fast path, one load instead of the
// call through sync.OnceValues (about 6% of an uncontended lockreg
// Lock+Unlock in pprof).
var goidOffset atomic.Uintptr

// Goid returns the current goroutine's id.
func Goid() int64 {
	if off := goidOffset.Load(); off != 0 {
		return gword(off - 1)
	}
	off, how := goidState()
	switch how {
	case goidFromG:
		return gword(off)
	case goidFromLib:
		return libGoid()
	}
	return ParseGoid()
}

// GoidOffset returns the offset of the goroutine id in the runtime's g, and
// whether it was found and verified. Callers that read g themselves (an
// assembly stub) use it.
func GoidOffset() (uintptr, bool) {
	off, how := goidState()
	return off, how == goidFromG
}

// GoidMethod names how Goid works in this process, for diagnostics:
// "g" (the offset found in the runtime's g), "goid" (the petermattis/goid
// package) or "parsed" (runtime.Stack).
func GoidMethod() string {
	switch _, how := goidState(); how {
	case goidFromG:
		return "g"
	case goidFromLib:
		return "goid"
	}
	return "parsed"
}

// ParseGoid parses "goroutine 123 [" from runtime.Stack: the reference the
// fast ways are checked against.
func ParseGoid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}

// checkGoid reports whether get agrees with ParseGoid here and in four new
// goroutines.
func checkGoid(get func() int64) bool {
	ok := get() == ParseGoid()
	done := make(chan bool)
	for i := 0; i < 4; i++ {
		go func() { done <- get() == ParseGoid() }()
	}
	for i := 0; i < 4; i++ {
		ok = <-done && ok
	}
	return ok
}

// findGoidOffset finds the one offset of g that holds the goroutine id in
// five goroutines (this one and four new ones, so five different ids).
func findGoidOffset() (uintptr, bool) {
	if !haveGetg {
		return 0, false
	}
	// candidates[i] counts the goroutines whose word i equals their id.
	var candidates [goidScan / 8]int
	scan := func() [goidScan / 8]bool {
		var hit [goidScan / 8]bool
		id := ParseGoid()
		for i := range hit {
			hit[i] = id != 0 && gword(uintptr(i*8)) == id
		}
		return hit
	}
	add := func(hit [goidScan / 8]bool) {
		for i, h := range hit {
			if h {
				candidates[i]++
			}
		}
	}
	add(scan())
	done := make(chan [goidScan / 8]bool)
	for i := 0; i < 4; i++ {
		go func() { done <- scan() }()
	}
	for i := 0; i < 4; i++ {
		add(<-done)
	}
	found, off := 0, uintptr(0)
	for i, n := range candidates {
		if n == 5 {
			found++
			off = uintptr(i * 8)
		}
	}
	return off, found == 1
}
