package pipeline

import (
	"bytes"
	"fmt"
	"strings"
)

// A worker killed in the middle of writing a large frame leaves part of it in
// the pipe. The reader counts what it could read whole, then reports the
// cut; it never guesses where the next frame starts.
func Example() {
	msg := appendFrame(nil, KindMessage, []byte(strings.Repeat("x", 10000)))
	var pipe bytes.Buffer
	pipe.Write(msg)
	pipe.Write(msg)
	pipe.Write(msg[:4096]) // SIGKILL here

	fr := newFrameReader(&pipe)
	delivered := 0
	for {
		_, _, err := fr.next(nil)
		if err != nil {
			fmt.Println("writer:", err)
			break
		}
		delivered++
	}
	fmt.Println("delivered", delivered)
	// Output:
	// writer: torn frame: the queue ended in the middle of a message: frame 3: 4088 of 10000 body bytes
	// delivered 2
}
