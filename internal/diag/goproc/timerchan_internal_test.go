package goproc

import (
	"debug/dwarf"
	"debug/elf"
	"os"
	"testing"
)

// TestHchanTimerOffset checks hchanTimer against the DWARF of this test
// binary's runtime: a release that moves runtime.hchan's timer field fails
// here before TimerChans reads a wrong word.
func TestHchanTimerOffset(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		t.Skipf("the test binary has no DWARF: %v", err)
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			t.Fatalf("no runtime.hchan in the DWARF (%v)", err)
		}
		if e.Tag != dwarf.TagStructType || e.Val(dwarf.AttrName) != "runtime.hchan" {
			continue
		}
		st, err := readStruct(d, e.Offset)
		if err != nil {
			t.Fatal(err)
		}
		field, ok := st.fields["timer"]
		if !ok {
			t.Fatalf("runtime.hchan has no timer field: %v", st.fields)
		}
		if field.off != hchanTimer {
			t.Fatalf("runtime.hchan.timer is at %d; hchanTimer says %d", field.off, hchanTimer)
		}
		return
	}
}

func TestAtLeastGo123(t *testing.T) {
	for v, want := range map[string]bool{"go1.26.8": true, "go1.23": true, "go1.22.12": false, "go1.27rc1": true, "devel": false, "go2.0": false} {
		if got := atLeastGo123(v); got != want {
			t.Errorf("atLeastGo123(%q) = %v; want %v", v, got, want)
		}
	}
}
