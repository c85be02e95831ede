package liveness

import (
	"bytes"
	"fmt"
	"testing"
)

// FuzzScanMaps: any /proc/PID/maps content is scanned without a panic, and
// a shared writable mapping of the arena is found wherever it stands among
// the lines given.
func FuzzScanMaps(f *testing.F) {
	f.Add([]byte("7f00-7f10 r-xp 00000000 08:01 99 /usr/lib/x\n"), 0)
	f.Add([]byte("7f00-7f10 rw-s 00000000 0a:03 1234 /dev/shm/run/arena (deleted)\n\x00\xff"), 1)
	f.Add([]byte(""), 0)
	r := &Run{dev: uint64(0x0a<<8 | 0x03), ino: 1234}
	arena := "7f00-7f10 rw-s 00000000 0a:03 1234 /a\n"
	f.Fuzz(func(t *testing.T, maps []byte, at int) {
		r.scanMaps(bytes.NewReader(maps))
		// The arena's line after the fuzzed lines' first at lines.
		lines := bytes.SplitAfter(maps, []byte("\n"))
		at = min(max(at, 0), len(lines))
		var b bytes.Buffer
		for _, l := range lines[:at] {
			b.Write(l)
		}
		if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
			b.WriteByte('\n')
		}
		b.WriteString(arena)
		found, _, err := r.scanMaps(&b)
		if !found || err != nil {
			t.Fatalf("%s: got %v, %v; want the arena found", fmt.Sprintf("%q", b.String()), found, err)
		}
	})
}
