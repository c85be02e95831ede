package stackdump

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// What ParseProfile builds is bounded before it builds anything: a 16 KiB
// gzipped profile of 8 million empty samples inflates to under
// MaxProfileSize, yet pprof's decoder would make a structure of 1.3 GB of
// it. countProfile walks the protobuf once, without building, and
// ParseProfile refuses a profile whose counts pass these bounds. A real
// goroutine profile has one sample per distinct stack and label set, far
// below them.
const (
	// MaxProfileSamples bounds a profile's samples (distinct stacks).
	MaxProfileSamples = 1 << 17
	// MaxProfileDecoded bounds the bytes pprof's decoder would build, as
	// countProfile estimates them (below), and the frames ParseProfile
	// returns (frameCost each).
	MaxProfileDecoded = 24 << 20
)

// Estimated bytes of what pprof builds for each message or value.
const (
	costSample   = 160 // *Sample, its struct, its share of the slice
	costLocation = 150
	costLine     = 48
	costFunction = 120
	costMapping  = 200
	costString   = 24 // a string header and its share of the slice
	costLabel    = 100
	costValue    = 16 // an int64 or a location id, and the slice growth
	costOther    = 16
)

// profileCounts is what countProfile found.
type profileCounts struct {
	samples, locations, lines, functions, mappings, strings, labels, values int
	bytes                                                                   int64 // estimated decoded size
}

var errProto = errors.New("malformed protobuf")

// countProfile counts what a pprof Profile message holds, down to the
// values of samples and the lines of locations, and estimates the bytes
// pprof's decoder would build of it.
func countProfile(b []byte) (profileCounts, error) {
	var c profileCounts
	err := walkProto(b, func(field, wire int, v []byte, n int) error {
		c.field(field, wire, v)
		return nil
	})
	return c, err
}

// countProfileStream counts as countProfile does, reading the protobuf from
// r field by field, and stops at the first field past the bounds: an
// amplifying profile is refused having read the start of it only.
func countProfileStream(r *bufio.Reader) (profileCounts, error) {
	var c profileCounts
	var v []byte
	for {
		key, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return c, nil
		}
		if err != nil {
			return c, errProto
		}
		field, wire := int(key>>3), int(key&7)
		if field == 0 {
			return c, errProto
		}
		v = v[:0]
		switch wire {
		case 0:
			if _, err := binary.ReadUvarint(r); err != nil {
				return c, errProto
			}
		case 1:
			if _, err := r.Discard(8); err != nil {
				return c, errProto
			}
		case 5:
			if _, err := r.Discard(4); err != nil {
				return c, errProto
			}
		case 2:
			l, err := binary.ReadUvarint(r)
			if err != nil || l > MaxProfileSize {
				return c, errProto
			}
			if uint64(cap(v)) < l {
				v = make([]byte, l)
			}
			v = v[:l]
			if _, err := io.ReadFull(r, v); err != nil {
				return c, errProto
			}
		default:
			return c, errProto
		}
		c.field(field, wire, v)
		if err := c.check(); err != nil {
			return c, err
		}
	}
}

// field counts one field of a Profile message.
func (c *profileCounts) field(field, wire int, v []byte) {
	switch field {
	case 2: // sample
		c.samples++
		c.bytes += costSample
		walkProto(v, func(field, wire int, v []byte, n int) error {
			switch {
			case field == 3: // label
				c.labels++
				c.bytes += costLabel
			case (field == 1 || field == 2) && wire == 2: // packed location ids, values
				k := varints(v)
				c.values += k
				c.bytes += int64(k) * costValue
			case field == 1 || field == 2:
				c.values++
				c.bytes += costValue
			}
			return nil
		})
	case 4: // location
		c.locations++
		c.bytes += costLocation
		walkProto(v, func(field, wire int, v []byte, n int) error {
			if field == 4 { // line
				c.lines++
				c.bytes += costLine
			}
			return nil
		})
	case 5:
		c.functions++
		c.bytes += costFunction
	case 3:
		c.mappings++
		c.bytes += costMapping
	case 6:
		c.strings++
		c.bytes += costString + int64(len(v))
	case 13:
		if wire == 2 {
			c.bytes += int64(varints(v)) * costValue
		} else {
			c.bytes += costValue
		}
	default:
		c.bytes += costOther
	}
}

// check refuses counts past the bounds.
func (c profileCounts) check() error {
	switch {
	case c.samples > MaxProfileSamples:
		return fmt.Errorf("%w: the goroutine profile holds %d samples, more than the %d distinct stacks lockwatch reads; it is damaged or hostile",
			ErrTooLarge, c.samples, MaxProfileSamples)
	case c.bytes > MaxProfileDecoded:
		return fmt.Errorf("%w: the goroutine profile would take some %d MiB to decode (%d samples, %d locations, %d lines, %d strings, %d values), more than the %d MiB lockwatch spends on one; it is damaged or hostile",
			ErrTooLarge, c.bytes>>20, c.samples, c.locations, c.lines, c.strings, c.values, MaxProfileDecoded>>20)
	}
	return nil
}

// walkProto calls f for each field of the protobuf message b: its number,
// wire type, and for length-delimited fields its bytes.
func walkProto(b []byte, f func(field, wire int, v []byte, n int) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errProto
		}
		b = b[n:]
		field, wire := int(key>>3), int(key&7)
		var v []byte
		switch wire {
		case 0:
			_, n = binary.Uvarint(b)
			if n <= 0 {
				return errProto
			}
		case 1:
			n = 8
		case 5:
			n = 4
		case 2:
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return errProto
			}
			v, n = b[k:k+int(l)], k+int(l)
		default:
			return errProto
		}
		if n > len(b) {
			return errProto
		}
		b = b[n:]
		if err := f(field, wire, v, n); err != nil {
			return err
		}
	}
	return nil
}

// varints counts the varints of a packed field.
func varints(b []byte) int {
	n := 0
	for _, c := range b {
		if c < 0x80 {
			n++
		}
	}
	return n
}
