package stackdump

import (
	"fmt"
	"time"

	"github.com/google/pprof/profile"
)

// A Profile is a goroutine profile as pprof records it: distinct stacks
// with how many goroutines were in each, and their pprof labels. It has no
// goroutine ids, states, wait times or arguments, and its stacks include
// the runtime's frames (runtime.gopark, runtime.chanrecv, runtime.goexit),
// which a text dump leaves out.
//
// A Profile is a plain value: safe for concurrent reads.
type Profile struct {
	Time    time.Time `json:"time,omitzero"` // when the profile was taken
	Samples []Sample  `json:"samples"`
}

// A Sample is one stack of a Profile.
type Sample struct {
	Frames []Frame `json:"frames"` // innermost first, inlined calls expanded
	Count  int64   `json:"count"`  // goroutines with this stack and these labels
	// Labels are the goroutines' pprof labels. A key the profile gives
	// several values (never, for goroutine profiles) keeps the first.
	Labels map[string]string `json:"labels,omitempty"`
}

// ParseProfile reads a goroutine profile in pprof protobuf form (gzipped or
// not), as CaptureProfile returns it.
func ParseProfile(b []byte) (*Profile, error) {
	pp, err := profile.ParseData(b)
	if err != nil {
		return nil, fmt.Errorf("stackdump: goroutine profile: %w", err)
	}
	if len(pp.SampleType) == 0 || pp.SampleType[0].Type != "goroutine" {
		return nil, fmt.Errorf("stackdump: not a goroutine profile (sample types %v)", pp.SampleType)
	}
	p := &Profile{Samples: make([]Sample, 0, len(pp.Sample))}
	if pp.TimeNanos != 0 {
		p.Time = time.Unix(0, pp.TimeNanos)
	}
	for _, s := range pp.Sample {
		out := Sample{Frames: []Frame{}}
		if len(s.Value) > 0 {
			out.Count = s.Value[0]
		}
		for _, loc := range s.Location {
			// Line[0] is the innermost of the calls inlined at this pc.
			for _, l := range loc.Line {
				f := Frame{Line: int(l.Line)}
				if l.Function != nil {
					f.Func, f.File = l.Function.Name, l.Function.Filename
				}
				out.Frames = append(out.Frames, f)
			}
		}
		for k, v := range s.Label {
			if len(v) > 0 {
				if out.Labels == nil {
					out.Labels = make(map[string]string)
				}
				out.Labels[k] = v[0]
			}
		}
		p.Samples = append(p.Samples, out)
	}
	return p, nil
}
