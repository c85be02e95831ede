package goproc

import "testing"

// TestModOffsetsOK: moduledata offsets taken from a binary's DWARF are used
// only when aligned, positive and bounded (a hostile binary's negative or
// huge offset would index out of range or size a huge scan).
func TestModOffsetsOK(t *testing.T) {
	for _, c := range []struct {
		off, toff int
		ok        bool
	}{
		{320, 176, true}, {344, 176, true},
		{320, -8, false}, {-8, 176, false}, {320, 0, false}, {0, 176, false},
		{320, 177, false}, {1 << 40, 176, false}, {320, 1 << 40, false},
	} {
		if got := modOffsetsOK(c.off, c.toff); got != c.ok {
			t.Errorf("modOffsetsOK(%d, %d) = %v; want %v", c.off, c.toff, got, c.ok)
		}
	}
}
