package pipeline

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A frame is one message on the queue's pipe: a fixed header, then the body.
//
//	offset 0  2 bytes  magic "LW"
//	offset 2  1 byte   kind: 1 message, 2 stop
//	offset 3  1 byte   zero
//	offset 4  4 bytes  body length, little-endian, at most MaxBody
//	offset 8  n bytes  body
//
// The pipe carries frames back to back, with nothing between them: once a
// frame is cut short, the reader cannot find where the next one begins. The
// magic and the length bound are there to notice that, not to recover.
const (
	headerSize = 8
	// MaxBody is the largest body a frame may carry.
	MaxBody = 64 << 20
)

// Kind is what a frame carries.
type Kind uint8

const (
	KindMessage Kind = 1 // a result of step 1
	KindStop    Kind = 2 // the sentinel: no more messages ("STOP" in the Python original)
)

var (
	// ErrTornFrame means the pipe ended in the middle of a frame: a process
	// was killed while it wrote one, and no other writer was left.
	ErrTornFrame = errors.New("torn frame: the queue ended in the middle of a message")

	// ErrLostSync means a header was not a header: the bytes before it held
	// part of a frame (a writer killed mid-write, and another writer went on
	// after it). Frames have no markers to resynchronise on, so the reader
	// cannot go on.
	ErrLostSync = errors.New("lost sync: garbage where a frame header was expected")
)

// appendFrame appends the frame of kind k with body to b.
func appendFrame(b []byte, k Kind, body []byte) []byte {
	var h [headerSize]byte
	h[0], h[1], h[2] = 'L', 'W', byte(k)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(body)))
	return append(append(b, h[:]...), body...)
}

// A frameReader reads frames from the read end of the queue's pipe. It is not
// safe for concurrent use.
type frameReader struct {
	r     *bufio.Reader
	frame int64 // frames read so far, for error messages
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next reads one frame and returns its kind and body; the body is valid
// until the following call. It returns io.EOF when the pipe ends between
// frames, an error wrapping ErrTornFrame when it ends inside one, and an
// error wrapping ErrLostSync when a header is invalid; after an error other
// than a read error, the stream cannot be read further.
func (f *frameReader) next(body []byte) (Kind, []byte, error) {
	var h [headerSize]byte
	if n, err := io.ReadFull(f.r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("%w: frame %d: %d of %d header bytes", ErrTornFrame, f.frame+1, n, headerSize)
		}
		return 0, nil, err
	}
	k, size := Kind(h[2]), binary.LittleEndian.Uint32(h[4:])
	if h[0] != 'L' || h[1] != 'W' || (k != KindMessage && k != KindStop) || h[3] != 0 || size > MaxBody {
		return 0, nil, fmt.Errorf("%w: after frame %d: header %q", ErrLostSync, f.frame, h[:])
	}
	if cap(body) < int(size) {
		body = make([]byte, size)
	}
	body = body[:size]
	if n, err := io.ReadFull(f.r, body); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return 0, nil, fmt.Errorf("%w: frame %d: %d of %d body bytes", ErrTornFrame, f.frame+1, n, size)
		}
		return 0, nil, err
	}
	f.frame++
	return k, body, nil
}
