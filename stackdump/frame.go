package stackdump

import (
	"fmt"

	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// Frame is one symbolized call frame.
type Frame struct {
	Func string `json:"func"`           // package-qualified function, e.g. "main.(*T).Run"
	File string `json:"file,omitempty"` // absolute source path as the binary records it
	Line int    `json:"line,omitempty"`

	// Set only by Parse, from traceback text.
	Args   string `json:"args,omitempty"`   // arguments as printed, e.g. "0xc000010000, {0x4b4f3a, 0x5}"; "..." for an inlined call
	Offset uint64 `json:"offset,omitempty"` // the "+0x1d" after the file line: pc minus the function's entry
}

func (f Frame) String() string {
	if f.File == "" {
		return f.Func
	}
	return fmt.Sprintf("%s\n\t%s:%d", f.Func, f.File, f.Line)
}

// FramesOf symbolizes return PCs of this process as runtime.Callers
// returns them, expanding inlined calls. It costs microseconds: call it
// once per distinct stack.
func FramesOf(pcs []uintptr) []Frame {
	fs := record.FramesOf(pcs)
	if fs == nil {
		return nil
	}
	out := make([]Frame, len(fs))
	for i, f := range fs {
		out[i] = Frame{Func: f.Func, File: f.File, Line: f.Line}
	}
	return out
}
