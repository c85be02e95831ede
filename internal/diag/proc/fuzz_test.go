package proc

import (
	"testing"
)

// FuzzParseStat: any /proc/PID/stat content parses or errors, never
// panics; a command name of any bytes (parentheses, blanks, newlines) is
// read back whole.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (sleep) S 1 1234 1234 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 5678 5578752 224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"), "x")
	f.Add([]byte("1 (a) b) c) R 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0 0"), ") ( ")
	f.Add([]byte(""), "\x1b]0;t\x07")
	f.Fuzz(func(t *testing.T, b []byte, comm string) {
		ParseStat(1, b)
		if len(comm) > 64 {
			return
		}
		line := []byte("7 (" + comm + ") S 1 7 7 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 4242 5578752 224 0 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
		s, err := ParseStat(7, line)
		if err != nil || s.Start != 4242 || s.PID != 7 || s.State != 'S' {
			t.Fatalf("comm %q: got %+v, %v; want start 4242, state S", comm, s, err)
		}
	})
}
