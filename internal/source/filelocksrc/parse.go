package filelocksrc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
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
		e, err := parseLine(line)
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
	return parseLine([]byte(line))
}

// parseLine is ParseLine on bytes, allocating nothing for a line it reads:
// a lock table of a million lines is parsed line by line. A line with a
// byte outside ASCII (never the kernel's) is read by parseLineText, whose
// idea of a space is Unicode's.
func parseLine(line []byte) (Entry, error) {
	for _, c := range line {
		if c >= utf8.RuneSelf {
			return parseLineText(string(line))
		}
	}
	var e Entry
	id, rest, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return e, errors.New("no id")
	}
	n, ok := parseInt(trimSpace(id), 64)
	if !ok || n < 0 {
		return e, fmt.Errorf("id %q", id)
	}
	e.ID = n
	if len(rest) == 0 || rest[0] != ' ' {
		return e, errors.New("no space after the id")
	}
	rest = rest[1:]
	spaces := 0
	for spaces < len(rest) && rest[spaces] == ' ' {
		spaces++
	}
	rest = rest[spaces:]
	if after, ok := bytes.CutPrefix(rest, []byte("->")); ok {
		e.Depth, rest = spaces+1, after
	} else if spaces != 0 {
		return e, errors.New("indented, with no \"->\"")
	}
	var f [7][]byte
	nf := 0
	for {
		for len(rest) > 0 && asciiSpace[rest[0]] {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			break
		}
		i := 0
		for i < len(rest) && !asciiSpace[rest[i]] {
			i++
		}
		if nf < len(f) {
			f[nf] = rest[:i]
		}
		nf++
		rest = rest[i:]
	}
	if nf < 2 {
		return e, errors.New("too few fields")
	}
	if e.Class, ok = classes[string(f[0])]; !ok {
		return e, fmt.Errorf("class %q", f[0])
	}
	if e.Mode, ok = modes[string(f[1])]; !ok || !modeOf(e.Class, e.Mode) {
		switch e.Class {
		case "LEASE", "DELEG":
			return e, fmt.Errorf("lease state %q", f[1])
		}
		return e, fmt.Errorf("mode %q", f[1])
	}
	if nf-2 != 5 {
		return e, fmt.Errorf("%d fields after the class; want 5 (type, pid, device:inode, start, end)", nf-2)
	}
	if e.Type, ok = types[string(f[2])]; !ok {
		return e, fmt.Errorf("type %q", f[2])
	}
	pid, ok := parseInt(f[3], 32)
	if !ok || pid < -1 {
		return e, fmt.Errorf("pid %q", f[3])
	}
	e.PID = int(pid)
	if string(f[4]) == "<none>:0" {
		e.NoInode = true
	} else {
		maj, rest, ok1 := bytes.Cut(f[4], []byte(":"))
		mnr, ino, ok2 := bytes.Cut(rest, []byte(":"))
		a, ok3 := parseUint(maj, 16, 32)
		b, ok4 := parseUint(mnr, 16, 32)
		c, ok5 := parseUint(ino, 10, 64)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return e, fmt.Errorf("device:inode %q", f[4])
		}
		e.Major, e.Minor, e.Inode = uint32(a), uint32(b), c
	}
	if e.Start, ok = parseInt(f[5], 64); !ok || e.Start < 0 {
		return e, fmt.Errorf("start %q", f[5])
	}
	if string(f[6]) == "EOF" {
		e.End = -1
	} else if e.End, ok = parseInt(f[6], 64); !ok || e.End < e.Start {
		return e, fmt.Errorf("end %q", f[6])
	}
	return e, nil
}

// The words of a lock line, as constants: an entry's strings are these,
// never a copy of the line.
var (
	classes = wordSet("FLOCK", "POSIX", "OFDLCK", "ACCESS", "LEASE", "DELEG", "UNKNOWN")
	modes   = wordSet("ADVISORY", "MANDATORY", "*NOINODE*", "ACTIVE", "BREAKING", "BREAKER", "UNKNOWN")
	types   = wordSet("READ", "WRITE", "UNLCK")
)

func wordSet(words ...string) map[string]string {
	m := make(map[string]string, len(words))
	for _, w := range words {
		m[w] = w
	}
	return m
}

// modeOf reports whether mode goes with class: a lock's ADVISORY,
// MANDATORY or *NOINODE*, a lease's state, UNKNOWN's UNKNOWN.
func modeOf(class, mode string) bool {
	switch class {
	case "LEASE", "DELEG":
		return mode == "ACTIVE" || mode == "BREAKING" || mode == "BREAKER"
	case "UNKNOWN":
		return mode == "UNKNOWN"
	}
	return mode == "ADVISORY" || mode == "MANDATORY" || mode == "*NOINODE*"
}

// asciiSpace are the bytes strings.Fields splits ASCII text at.
var asciiSpace = [256]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && asciiSpace[b[0]] {
		b = b[1:]
	}
	for len(b) > 0 && asciiSpace[b[len(b)-1]] {
		b = b[:len(b)-1]
	}
	return b
}

// parseUint is strconv.ParseUint(string(b), base, bits) for base 10 or 16,
// without the string.
func parseUint(b []byte, base uint64, bits int) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	maxVal := uint64(1)<<uint(bits) - 1
	cutoff := ^uint64(0)/base + 1
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if n >= cutoff {
			return 0, false
		}
		n *= base
		n1 := n + d
		if n1 < n || n1 > maxVal {
			return 0, false
		}
		n = n1
	}
	return n, true
}

// parseInt is strconv.ParseInt(string(b), 10, bits), without the string.
func parseInt(b []byte, bits int) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg, b = b[0] == '-', b[1:]
	}
	un, ok := parseUint(b, 10, 64)
	if !ok {
		return 0, false
	}
	cutoff := uint64(1) << uint(bits-1)
	if !neg && un >= cutoff || neg && un > cutoff {
		return 0, false
	}
	if neg {
		return -int64(un), true
	}
	return int64(un), true
}

// parseLineText is parseLine for a line with bytes outside ASCII, with
// the strings package's idea of spaces and fields.
func parseLineText(line string) (Entry, error) {
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
func (e *Entry) Range() string { return string(appendRange(nil, e.Start, e.End)) }

func appendRange(b []byte, start, end int64) []byte {
	b = append(strconv.AppendInt(b, start, 10), '-')
	if end < 0 {
		return append(b, "EOF"...)
	}
	return strconv.AppendInt(b, end, 10)
}

// clip shortens a line quoted in an error.
func clip(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}
