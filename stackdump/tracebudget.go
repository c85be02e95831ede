package stackdump

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// What ParseTrace builds is bounded before the trace parser
// (golang.org/x/exp/trace) builds anything: a trace's stack table takes some
// 7 bytes of input a stack, which the parser turns into some 100 bytes of
// tables, so 32 MiB of stacks would build more than 400 MiB. countTrace
// walks the trace's batches once, without building, and ParseTrace refuses
// a trace whose tables would pass MaxTraceDecoded. A trace the probe takes
// (started and stopped at once) of 10,000 goroutines in a few hundred
// distinct stacks builds well under a MiB.
const (
	// MaxTraceDecoded bounds the bytes the trace parser would build, as
	// countTrace estimates them.
	MaxTraceDecoded = 48 << 20
	// MaxTraceGoroutines bounds the goroutines ParseTrace follows; the
	// ones past it are counted (Snapshot.Dropped), not kept.
	MaxTraceGoroutines = 1 << 17
)

// Estimated bytes the trace parser builds for each entry of a table.
const (
	traceCostStack  = 96  // a stack table entry: its slot, slice header and array
	traceCostFrame  = 136 // a frame's pc in its stack, and its entry in the pc table
	traceCostString = 48  // a string table entry, plus its bytes
	traceCostSample = 64  // a CPU sample
	traceCostBatch  = 96  // an event batch kept until its generation is read, plus its bytes
	// A trace of the old format (before Go 1.22) is converted whole in
	// memory; it is charged this many bytes per byte of input.
	traceCostV1 = 16
)

// The execution trace format's event types that countTrace reads
// (internal/trace/tracev2 of the Go distribution).
const (
	evEventBatch        = 1
	evStacks            = 2
	evStack             = 3
	evStrings           = 4
	evString            = 5
	evCPUSamples        = 6
	evCPUSample         = 7
	evExperimentalBatch = 49
	evEndOfGeneration   = 52
)

// traceCounts is what countTrace found.
type traceCounts struct {
	stacks, frames, strings, samples, batches int
	bytes                                     int64 // estimated size of what the parser builds
}

// countTrace counts the tables of an execution trace and estimates the
// bytes the trace parser would build of them. It stops at the first byte it
// cannot read as the format says, having counted what came before: the
// parser stops there too.
func countTrace(b []byte) traceCounts {
	var c traceCounts
	const header = len("go 1.26 trace\x00\x00\x00")
	if len(b) < header || string(b[:5]) != "go 1." || string(b[7:header]) != " trace\x00\x00\x00" {
		return c // not a trace: the parser refuses it before building
	}
	if v, err := strconv.Atoi(string(b[5:7])); err != nil || v < 22 {
		c.bytes = int64(len(b)) * traceCostV1
		return c
	}
	r := traceReader{b: b[header:]}
	for len(r.b) > 0 {
		typ := r.byte()
		if typ == evEndOfGeneration {
			continue
		}
		exp := false
		switch typ {
		case evExperimentalBatch:
			exp = true
			r.byte()
		case evEventBatch:
		default:
			return c.estimate()
		}
		r.uvarint() // generation
		r.uvarint() // M
		r.uvarint() // timestamp
		size := r.uvarint()
		if r.bad || size > uint64(len(r.b)) {
			return c.estimate()
		}
		data := traceReader{b: r.b[:size]}
		r.b = r.b[size:]
		if exp || size == 0 {
			c.batches++
			c.bytes += int64(size)
			continue
		}
		switch data.byte() {
		case evStacks:
			for len(data.b) > 0 && !data.bad && data.byte() == evStack {
				data.uvarint() // id
				n := data.uvarint()
				for i := uint64(0); i < n && !data.bad; i++ {
					data.uvarint() // pc
					data.uvarint() // function name
					data.uvarint() // file name
					data.uvarint() // line
					c.frames++
				}
				c.stacks++
			}
		case evStrings:
			for len(data.b) > 0 && !data.bad && data.byte() == evString {
				data.uvarint() // id
				n := data.uvarint()
				n = min(n, uint64(len(data.b)))
				data.b = data.b[n:]
				c.strings++
				c.bytes += int64(n)
			}
		case evCPUSamples:
			for len(data.b) > 0 && !data.bad && data.byte() == evCPUSample {
				for range 5 {
					data.uvarint()
				}
				c.samples++
			}
		default:
			c.batches++
			c.bytes += int64(size)
		}
	}
	return c.estimate()
}

// estimate adds the tables' estimated sizes to c.bytes.
func (c traceCounts) estimate() traceCounts {
	c.bytes += int64(c.stacks)*traceCostStack + int64(c.frames)*traceCostFrame +
		int64(c.strings)*traceCostString + int64(c.samples)*traceCostSample + int64(c.batches)*traceCostBatch
	return c
}

// checkTrace refuses a trace whose tables would build more than
// MaxTraceDecoded bytes.
func checkTrace(b []byte) error {
	c := countTrace(b)
	if c.bytes <= MaxTraceDecoded {
		return nil
	}
	return fmt.Errorf("%w: the execution trace would build some %d MiB of tables (%d stacks of %d frames, %d strings, %d CPU samples, %d event batches), more than %d MiB",
		ErrTooLarge, c.bytes>>20, c.stacks, c.frames, c.strings, c.samples, c.batches, MaxTraceDecoded>>20)
}

// traceReader reads bytes and uvarints of a trace; past the end or on a
// malformed uvarint it sets bad and reads zeros.
type traceReader struct {
	b   []byte
	bad bool
}

func (r *traceReader) byte() byte {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *traceReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}
