package record

import "runtime"

// A Frame is one symbolized call frame of this process, as lockwatch's
// files and the probe's answers write it: the same JSON as
// stackdump.Frame, which readers decode it into. It is here, not there, so
// that code inside the user's program links no traceback parser.
type Frame struct {
	Func string `json:"func"`           // package-qualified function, e.g. "main.(*T).Run"
	File string `json:"file,omitempty"` // absolute source path as the binary records it
	Line int    `json:"line,omitempty"`
}

// FramesOf symbolizes return PCs as runtime.Callers returns them, expanding
// inlined calls. It costs microseconds: call it once per distinct stack.
func FramesOf(pcs []uintptr) []Frame {
	if len(pcs) == 0 {
		return nil
	}
	out := make([]Frame, 0, len(pcs))
	it := runtime.CallersFrames(pcs)
	for {
		fr, more := it.Next()
		if fr.Function != "" || fr.File != "" {
			out = append(out, Frame{Func: fr.Function, File: fr.File, Line: fr.Line})
		}
		if !more {
			return out
		}
	}
}
