package stackdump

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
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

// MaxProfileSize bounds a goroutine profile's protobuf, after
// decompression. A goroutine profile has one sample per distinct stack and
// label set: 10,000 goroutines in 100 distinct stacks take some 40 KiB, and
// a program would need hundreds of thousands of distinct stacks to come
// near the limit. It keeps a gzip bomb (9 MiB that inflate to 9 GiB) from
// exhausting the reader: decompression stops at the limit.
const MaxProfileSize = 16 << 20

// ErrTooLarge is returned, wrapped, for input past a reader's limit.
var ErrTooLarge = errors.New("stackdump: input too large")

// ParseProfile reads a goroutine profile in pprof protobuf form (gzipped or
// not), as runtime/pprof writes it, of at most MaxProfileSize bytes
// (decompressed).
func ParseProfile(b []byte) (*Profile, error) {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("stackdump: goroutine profile: %w", err)
		}
		// Inflated and counted as it streams, kept only as far as it
		// is counted: a profile past the bounds is refused having
		// kept the start of it; the rest is inflated (not kept) only to
		// tell a gzip bomb.
		var raw bytes.Buffer
		lr := &io.LimitedReader{R: zr, N: MaxProfileSize + 1}
		_, cerr := countProfileStream(bufio.NewReaderSize(io.TeeReader(lr, &raw), 64<<10))
		if cerr != nil {
			raw = bytes.Buffer{}
			io.Copy(io.Discard, lr)
		}
		if lr.N == 0 {
			return nil, fmt.Errorf("%w: the goroutine profile (%d bytes gzipped) inflates past %d MiB, far more than a goroutine profile takes; it is damaged or hostile (a gzip bomb)",
				ErrTooLarge, len(b), MaxProfileSize>>20)
		}
		if cerr != nil && !errors.Is(cerr, ErrTooLarge) {
			return nil, fmt.Errorf("stackdump: goroutine profile: %w", cerr)
		}
		if cerr != nil {
			return nil, cerr
		}
		b = raw.Bytes()
	}
	if len(b) > MaxProfileSize {
		return nil, fmt.Errorf("%w: the goroutine profile is %d bytes, more than the %d MiB a goroutine profile takes", ErrTooLarge, len(b), MaxProfileSize>>20)
	}
	c, err := countProfile(b)
	if err != nil {
		return nil, fmt.Errorf("stackdump: goroutine profile: %w", err)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
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
	frames := 0
	for _, s := range pp.Sample {
		for _, loc := range s.Location {
			frames += len(loc.Line)
		}
		if frames > MaxProfileDecoded/frameCost {
			// Few locations shared by many samples: small to decode,
			// large once each sample's frames are spelled out.
			return nil, fmt.Errorf("%w: the goroutine profile's samples hold more than %d frames, more than lockwatch spends on one; it is damaged or hostile",
				ErrTooLarge, MaxProfileDecoded/frameCost)
		}
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
