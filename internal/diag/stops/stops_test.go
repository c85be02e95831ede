package stops

import (
	"runtime"
	"testing"
)

// A stop of the world between two Reads is counted, none is not.
func TestLongest(t *testing.T) {
	before := Read()
	if d := Longest(before, before); d != 0 {
		t.Errorf("no pause between a Read and itself: got %v", d)
	}
	runtime.GC() // stops the world at least twice
	after := Read()
	if d := Longest(before[:1], after[:1]); d <= 0 {
		t.Errorf("a GC between two Reads: longest GC pause %v; want more than 0", d)
	}
	if d := Longest(before, after); d < Longest(before[:1], after[:1]) {
		t.Errorf("both histograms: %v, less than the GC's alone", d)
	}
}
