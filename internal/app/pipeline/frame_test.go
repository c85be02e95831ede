package pipeline

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// readAll reads frames from b until an error, and returns the messages read,
// whether the stop sentinel came, and the error (nil after the sentinel).
func readAll(b []byte) (msgs int, stopped bool, err error) {
	fr := newFrameReader(bytes.NewReader(b))
	var body []byte
	for {
		var k Kind
		if k, body, err = fr.next(body); err != nil {
			return msgs, false, err
		}
		if k == KindStop {
			return msgs, true, nil
		}
		msgs++
	}
}

func TestFrameReader(t *testing.T) {
	msg := appendFrame(nil, KindMessage, []byte(strings.Repeat("x", 5000)))
	stop := appendFrame(nil, KindStop, []byte("STOP"))
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name        string
		in          []byte
		wantMsgs    int
		wantStopped bool
		wantErr     error
	}{
		{name: "messages then stop", in: cat(msg, msg, stop), wantMsgs: 2, wantStopped: true},
		{name: "empty body", in: cat(appendFrame(nil, KindMessage, nil), stop), wantMsgs: 1, wantStopped: true},
		{name: "end between frames", in: cat(msg, msg), wantMsgs: 2, wantErr: io.EOF},
		// A writer killed mid-write, and no writer after it: the pipe ends
		// inside the frame.
		{name: "torn header", in: cat(msg, msg[:5]), wantMsgs: 1, wantErr: ErrTornFrame},
		{name: "torn body", in: cat(msg, msg[:4096]), wantMsgs: 1, wantErr: ErrTornFrame},
		// A writer killed mid-write, and another writer went on: the
		// reader takes the next frame's start as the rest of the torn body,
		// then meets payload bytes where a header should be.
		{name: "torn body, then more frames", in: cat(msg, msg[:4096], msg, msg, stop), wantMsgs: 2, wantErr: ErrLostSync},
		{name: "garbage", in: []byte("STOP\n\x00\x00\x00"), wantErr: ErrLostSync},
		{name: "unknown kind", in: cat([]byte{'L', 'W', 9, 0, 0, 0, 0, 0}, stop), wantErr: ErrLostSync},
		{name: "length over MaxBody", in: []byte{'L', 'W', 1, 0, 0xff, 0xff, 0xff, 0xff}, wantErr: ErrLostSync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, stopped, err := readAll(tt.in)
			if msgs != tt.wantMsgs || stopped != tt.wantStopped || !errors.Is(err, tt.wantErr) {
				t.Errorf("got %d messages, stopped %v, error %v; want %d, %v, %v",
					msgs, stopped, err, tt.wantMsgs, tt.wantStopped, tt.wantErr)
			}
		})
	}
}

// FuzzFrameReader checks that no input makes the reader panic or loop, and
// that it only ever fails with the documented errors.
func FuzzFrameReader(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, KindMessage, []byte("x")), KindStop, []byte("STOP")))
	f.Add(appendFrame(nil, KindMessage, []byte("xxxxxxxx"))[:11])
	f.Add([]byte("LW\x01\x00\xff\xff\xff\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _, err := readAll(b)
		if msgs > len(b)/headerSize {
			t.Fatalf("got %d messages from %d bytes", msgs, len(b))
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, ErrTornFrame) && !errors.Is(err, ErrLostSync) {
			t.Fatalf("got error %v; want io.EOF, ErrTornFrame or ErrLostSync", err)
		}
	})
}
