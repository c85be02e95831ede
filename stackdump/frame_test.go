package stackdump

import (
	"runtime"
	"testing"
)

func TestFramesOf(t *testing.T) {
	pcs := make([]uintptr, 16)
	n := runtime.Callers(1, pcs)
	frames := FramesOf(pcs[:n])
	if len(frames) == 0 || frames[0].Func != "github.com/lockwatch/lockwatch/stackdump.TestFramesOf" || frames[0].Line == 0 {
		t.Errorf("FramesOf: got %v; want TestFramesOf first", frames)
	}
	if FramesOf(nil) != nil {
		t.Errorf("FramesOf(nil): got non-nil; want nil")
	}
}
