// Command panic panics in a goroutine, in a method of a generic type, with
// the default GOTRACEBACK: the dump shows only the panicking goroutine.
// stackdump's tests run it with -update to make testdata/panic.txt.
package main

import (
	"errors"
	"time"
)

type pair[K comparable, V any] struct {
	k K
	v V
}

func (p *pair[K, V]) check(limit int, name string) {
	if limit > 0 {
		panic(errors.New("boom: " + name))
	}
}

func main() {
	go func() {
		p := &pair[string, int]{k: "a", v: 1}
		p.check(3, "worker")
	}()
	time.Sleep(time.Minute)
}
