package filelocksrc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrParse is wrapped by every error about a line of /proc/locks or of a
// /proc/PID/fdinfo file that could not be read.
var ErrParse = errors.New("filelocksrc: unreadable lock line")

// An Entry is one line of /proc/locks: a lock held, or a request blocked
// behind one (a "->" line). The kernel prints each held lock followed by
// the requests blocked on it, depth first: a request may be blocked behind
// another blocked request (Depth 2 and more), and all of them wait, in the
// end, for the held lock above them.
type Entry struct {
	ID    int64  // the number before the colon: the held lock's position; its waiters repeat it
	Depth int    // 0: a held lock (or a lease); n > 0: a request blocked n levels below it
	Class string // FLOCK, POSIX, OFDLCK, ACCESS, LEASE, DELEG, UNKNOWN
	Mode  string // ADVISORY, MANDATORY (kernels before 5.15); ACTIVE, BREAKING, BREAKER (leases); *NOINODE*
	Type  string // READ, WRITE, UNLCK
	// PID is the owner's process: for POSIX locks the process that owns
	// them; for flock locks the process that took the lock (the lock
	// itself belongs to the open file description, which children may
	// share); -1 for OFD locks, whose owner the kernel does not name; 0
	// when the owner is not in this pid namespace (or gone).
	PID          int
	Major, Minor uint32 // the file system's device (the superblock's, not st_dev)
	Inode        uint64
	NoInode      bool  // "<none>:0": the lock has no file
	Start        int64 // first byte; 0 for flock locks
	End          int64 // last byte, inclusive; -1 for EOF (to the end of the file, and beyond)
}

// Limits bound what Parse reads.
type Limits struct {
	// MaxLine is the longest line kept, in bytes; a longer line is an
	// error (a real one is under 100 bytes). Default 512.
	MaxLine int
	// MaxEntries is how many entries are kept; the rest are counted, not
	// parsed. Default 1<<20.
	MaxEntries int
	// MaxErrors is how many line errors are kept; the rest are counted.
	// Default 10.
	MaxErrors int
}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = 512
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = 1 << 20
	}
	if l.MaxErrors <= 0 {
		l.MaxErrors = 10
	}
	return l
}

// Parsed is what Parse read of /proc/locks.
type Parsed struct {
	Entries []Entry
	// Dropped counts lines left out: lines that could not be read, and the
	// requests listed under a held lock whose own line could not be read
	// (a waiter must never be put under the wrong lock).
	Dropped int
	// Over counts entries beyond Limits.MaxEntries, not parsed.
	Over int
	// Errors counts the lines that could not be read; Err keeps the first
	// Limits.MaxErrors of them.
	Errors int
	Err    error
}

// Parse reads the text of /proc/locks. It never fails as a whole: each
// line it cannot read is an error in Parsed.Err (joined, the first
// Limits.MaxErrors), and is left out with every request listed under it.
// It reads only b, and keeps at most Limits.MaxEntries entries.
func Parse(b []byte, lim Limits) Parsed {
	lim = lim.withDefaults()
	var p Parsed
	var errs []error
	fail := func(n int, line []byte, err error) {
		p.Errors++
		p.Dropped++
		if len(errs) < lim.MaxErrors {
			errs = append(errs, fmt.Errorf("%w: line %d %q: %v", ErrParse, n, clip(line), err))
		}
	}
	rootOK := false  // the last held lock's line was read: its waiters may follow
	var rootID int64 // and its id
	lastDepth := 0   // depth of the last entry kept under it
	p.Entries = make([]Entry, 0, min(bytes.Count(b, []byte{'\n'})+1, lim.MaxEntries))
	for n := 1; len(b) > 0; n++ {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(p.Entries) >= lim.MaxEntries {
			p.Over++
			continue
		}
		if len(line) > lim.MaxLine {
			fail(n, line, fmt.Errorf("longer than %d bytes", lim.MaxLine))
			rootOK = rootOK && isWaiterLine(line)
			continue
		}
		e, err := ParseLine(string(line))
		switch {
		case err != nil:
			fail(n, line, err)
			if !isWaiterLine(line) {
				rootOK = false // its waiters would be put under the wrong lock
			}
			continue
		case e.Depth == 0:
			rootOK, rootID, lastDepth = true, e.ID, 0
		case !rootOK:
			p.Dropped++ // under a held lock that was not read
			continue
		case e.ID != rootID:
			fail(n, line, fmt.Errorf("a request numbered %d under lock %d", e.ID, rootID))
			continue
		case e.Depth > lastDepth+1:
			fail(n, line, fmt.Errorf("a request %d levels deep after one %d levels deep", e.Depth, lastDepth))
			continue
		default:
			lastDepth = e.Depth
		}
		p.Entries = append(p.Entries, e)
	}
	p.Err = errors.Join(errs...)
	return p
}

// isWaiterLine reports whether a line that could not be read looks like a
// request's ("N: -> ..."), not a held lock's: a held lock's unreadable line
// makes the requests under it unplaceable.
func isWaiterLine(line []byte) bool {
	_, rest, ok := bytes.Cut(line, []byte(":"))
	return ok && bytes.HasPrefix(bytes.TrimLeft(rest, " "), []byte("->"))
}

// ParseLine reads one line of /proc/locks (or the text after "lock:\t" in
// a /proc/PID/fdinfo file):
//
//	1: POSIX  ADVISORY  WRITE 4242 fe:00:9978082 0 EOF
//	1: -> FLOCK  ADVISORY  WRITE 4243 fe:00:9978082 0 EOF
//	1:  -> OFDLCK ADVISORY  READ -1 fe:00:9978082 100 199
func ParseLine(line string) (Entry, error) {
	var e Entry
	id, rest, ok := strings.Cut(line, ":")
	if !ok {
		return e, errors.New("no id")
	}
	var err error
	if e.ID, err = strconv.ParseInt(strings.TrimSpace(id), 10, 64); err != nil || e.ID < 0 {
		return e, fmt.Errorf("id %q", id)
	}
	if !strings.HasPrefix(rest, " ") {
		return e, errors.New("no space after the id")
	}
	rest = rest[1:]
	spaces := len(rest) - len(strings.TrimLeft(rest, " "))
	rest = rest[spaces:]
	if after, ok := strings.CutPrefix(rest, "->"); ok {
		e.Depth, rest = spaces+1, after
	} else if spaces != 0 {
		return e, errors.New("indented, with no \"->\"")
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return e, errors.New("too few fields")
	}
	e.Class, e.Mode = f[0], f[1]
	switch e.Class {
	case "FLOCK", "POSIX", "OFDLCK", "ACCESS":
		switch e.Mode {
		case "ADVISORY", "MANDATORY", "*NOINODE*":
		default:
			return e, fmt.Errorf("mode %q", e.Mode)
		}
	case "LEASE", "DELEG":
		switch e.Mode {
		case "ACTIVE", "BREAKING", "BREAKER":
		default:
			return e, fmt.Errorf("lease state %q", e.Mode)
		}
	case "UNKNOWN":
		if e.Mode != "UNKNOWN" {
			return e, fmt.Errorf("mode %q", e.Mode)
		}
	default:
		return e, fmt.Errorf("class %q", e.Class)
	}
	f = f[2:]
	if len(f) != 5 {
		return e, fmt.Errorf("%d fields after the class; want 5 (type, pid, device:inode, start, end)", len(f))
	}
	e.Type = f[0]
	switch e.Type {
	case "READ", "WRITE", "UNLCK":
	default:
		return e, fmt.Errorf("type %q", e.Type)
	}
	pid, err := strconv.ParseInt(f[1], 10, 32)
	if err != nil || pid < -1 {
		return e, fmt.Errorf("pid %q", f[1])
	}
	e.PID = int(pid)
	if f[2] == "<none>:0" {
		e.NoInode = true
	} else {
		parts := strings.Split(f[2], ":")
		if len(parts) != 3 {
			return e, fmt.Errorf("device:inode %q", f[2])
		}
		maj, err1 := strconv.ParseUint(parts[0], 16, 32)
		mnr, err2 := strconv.ParseUint(parts[1], 16, 32)
		ino, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return e, fmt.Errorf("device:inode %q", f[2])
		}
		e.Major, e.Minor, e.Inode = uint32(maj), uint32(mnr), ino
	}
	if e.Start, err = strconv.ParseInt(f[3], 10, 64); err != nil || e.Start < 0 {
		return e, fmt.Errorf("start %q", f[3])
	}
	if f[4] == "EOF" {
		e.End = -1
	} else if e.End, err = strconv.ParseInt(f[4], 10, 64); err != nil || e.End < e.Start {
		return e, fmt.Errorf("end %q", f[4])
	}
	return e, nil
}

// Dev is the entry's device as /proc/locks prints it: "fe:00".
func (e *Entry) Dev() string { return fmt.Sprintf("%02x:%02x", e.Major, e.Minor) }

// Range is the bytes the entry covers: "0-EOF", "100-199".
func (e *Entry) Range() string {
	if e.End < 0 {
		return strconv.FormatInt(e.Start, 10) + "-EOF"
	}
	return strconv.FormatInt(e.Start, 10) + "-" + strconv.FormatInt(e.End, 10)
}

// clip shortens a line quoted in an error.
func clip(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}
