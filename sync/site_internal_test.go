//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	"runtime"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
)

// TestSiteOfFirstAddress: the site search starts at the first return
// address above the records function. It is the program's when the public
// method that called the records function was inlined into the program
// (as a PGO build does at hot sites), and then it is the site.
func TestSiteOfFirstAddress(t *testing.T) {
	var all [4]uintptr
	n := runtime.Callers(1, all[:]) // this test, testing.tRunner, runtime.goexit
	if n < 3 {
		t.Fatalf("runtime.Callers: %d frames", n)
	}
	var pcs framePCs
	copy(pcs[:], all[1:n]) // as if the program's tRunner had called the records function
	want, ok := inproc.UserPC(all[1])
	if !ok {
		t.Fatalf("testing.tRunner's return address %#x is not the program's", all[1])
	}
	if pc, pc2 := siteOf(&pcs); pc != want || pc2 != all[2] {
		t.Errorf("siteOf = %#x, %#x; want the first address %#x and the one after it %#x", pc, pc2, want, all[2])
	}
}
