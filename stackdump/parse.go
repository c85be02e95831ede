package stackdump

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ErrParse reports traceback text that could not be read. Parse wraps it
// with the line number and the line.
var ErrParse = errors.New("stackdump: cannot parse traceback")

// ErrSeveralDumps reports an input that holds more than one dump, which
// Parse does not merge: it returns the first, and ParseDumps reads each.
var ErrSeveralDumps = errors.New("stackdump: several dumps in one input")

const (
	// maxLine bounds the memory a line takes: a longer line keeps its
	// first maxLine-lineTail bytes and its last lineTail bytes, with a
	// marker saying how many bytes were cut between them. A frame line
	// keeps its function and the end of its arguments, a source line its
	// file name's end and line number, so the frame is still read.
	maxLine   = 64 << 10
	lineTail  = 4 << 10
	maxErrors = 100 // further errors are counted, not listed
	// maxPrefixFields is how many blank-separated fields a prefix before
	// every line (a timestamp, a log's host and program) may have.
	maxPrefixFields = 6
)

// What Parse keeps of one input is bounded by what it builds, not only by
// what it reads: a traceback of many tiny goroutines (40 bytes of text
// each) would otherwise build some 30 times its size. Past either bound,
// goroutines are counted (Snapshot.Dropped) and not kept, and a kept
// goroutine's further frames are left out (Elision at its end).
const (
	// MaxGoroutines bounds the goroutines Parse keeps of one input: more
	// than a 64 MiB dump of ordinary goroutines (some 700 bytes each)
	// holds.
	MaxGoroutines = 1 << 17
	// MaxRetained bounds the bytes Parse keeps of one input, as it counts
	// them: goroutines (goroutineCost each), frames (frameCost each),
	// labels and the strings it makes.
	MaxRetained = 64 << 20

	goroutineCost = 300 // a Goroutine, its share of the slice, its id
	frameCost     = 64  // a Frame
	labelCost     = 64  // a map entry
)

// The parser is a state machine over lines. Each state expects some lines
// and says where each leads; a line a state does not expect either ends
// the goroutine (text after a dump) or is reported as an error. See the
// package documentation for the table.
type state int

const (
	// stateText: outside any goroutine. Expects a goroutine header, which
	// opens a goroutine and leads to stateFrame. Every other line is text
	// around the dump (a panic message, test output, a register dump) and
	// stays in stateText; the first "panic: ", "fatal error: " or "SIGxxx: "
	// line becomes Snapshot.Reason.
	stateText state = iota
	// stateFrame: inside a goroutine, after its header or a frame. Expects
	//   - a function line "pkg.f(args)": stateFile
	//   - "...N frames elided...": stateFrame
	//   - "\tgoroutine running on other thread; stack unavailable": stateFrame
	//   - "created by pkg.f[ in goroutine N]": stateCreatorFile
	//   - "[originating from goroutine N]:", which opens an ancestor whose
	//     frames follow: stateFrame
	//   - a goroutine header, which opens the next goroutine: stateFrame
	//   - an empty line, which ends the goroutine: stateText
	// A tab-indented line is an error (stateFrame); any other line ends the
	// goroutine and is read again in stateText.
	stateFrame
	// stateFile: after a function line. Expects its source position
	// "\tfile:line[ +0x1d][ fp=0x.. sp=0x.. pc=0x..]": stateFrame. An
	// indented line it cannot read is an error (stateFrame); any other line
	// is an error and is read again in stateFrame.
	stateFile
	// stateCreatorFile: after "created by". Expects the source position of
	// the go statement: stateFrame. Other lines as in stateFile.
	stateCreatorFile
)

// Parse reads Go traceback text: a SIGQUIT dump, a panic, the panic of a
// `go test -timeout`, the output of runtime.Stack or of pprof's goroutine
// profile with debug=2. It reads the formats of Go 1.17 and later, and skips
// any text around the dump.
//
// A line may carry a prefix, the same number of blank-separated fields
// before every line, as logs add (`kubectl logs --timestamps`, `docker logs
// -t`, journald): a prefix with a digit in it is learned from the first
// goroutine header that follows one, and cut from every line after it.
//
// Parse does not stop at lines it cannot read: it returns every goroutine
// it could read, and an error that joins one ErrParse per unreadable line.
// An input that holds several dumps (two panics appended to one log, a
// goroutine id seen twice) is not merged: Parse returns the first, and its
// error wraps ErrSeveralDumps; ParseDumps returns each.
func Parse(r io.Reader) (*Snapshot, error) {
	return ParseWithin(r, Limits{})
}

// ParseDumps reads Go traceback text as Parse does, and returns each dump
// of the input apart, in input order; there is always at least one, which
// may have no goroutines. A new dump starts at a reason line ("panic: ",
// "fatal error: ", "SIGQUIT: quit") that follows goroutines, and at a
// goroutine header whose id the dump already has (goroutine 0, which each
// thread of a GOTRACEBACK=crash dump prints, excepted). The error joins the
// unreadable lines of all dumps.
func ParseDumps(r io.Reader) ([]*Snapshot, error) {
	return ParseDumpsWithin(r, Limits{})
}

// Limits bound what Parse keeps of one input; zero fields take the
// defaults, MaxGoroutines and MaxRetained. A reader that parses several
// inputs at once (a report asking many probes) gives each a share.
type Limits struct {
	Goroutines int
	Retained   int64
}

// ParseWithin is Parse within limits.
func ParseWithin(r io.Reader, l Limits) (*Snapshot, error) {
	dumps, err := ParseDumpsWithin(r, l)
	if len(dumps) > 1 {
		err = errors.Join(err, fmt.Errorf("%w: %d dumps; the first is read, ParseDumps reads each", ErrSeveralDumps, len(dumps)))
	}
	return dumps[0], err
}

// ParseDumpsWithin is ParseDumps within limits.
func ParseDumpsWithin(r io.Reader, l Limits) ([]*Snapshot, error) {
	if l.Goroutines <= 0 || l.Goroutines > MaxGoroutines {
		l.Goroutines = MaxGoroutines
	}
	if l.Retained <= 0 || l.Retained > MaxRetained {
		l.Retained = MaxRetained
	}
	p := &parser{
		r:      bufio.NewReaderSize(r, 64<<10),
		intern: make(map[string]string),
		limits: l,
	}
	p.newDump()
	err := p.run()
	return p.dumps, err
}

type parser struct {
	r      *bufio.Reader
	long   []byte // a line longer than r's buffer
	tail   []byte // the last lineTail bytes of a long line
	cut    int    // bytes cut from the current line
	n      int    // line number
	st     state
	dumps  []*Snapshot
	snap   *Snapshot      // the dump being read, the last of dumps
	ids    map[int64]bool // goroutine ids of snap
	g      *Goroutine     // the goroutine being read, in snap.Goroutines
	anc    *Ancestor      // the ancestor being read, in g.Ancestors; nil when reading g itself
	intern map[string]string
	errs   []error
	more   int // errors beyond maxErrors

	// What is kept of the input, and the bounds: past them, p.g is
	// p.spare (reused, not kept) and frames go to p.spareFrame.
	limits     Limits
	kept       int   // goroutines kept, all dumps
	retained   int64 // bytes kept, as counted
	spare      Goroutine
	spareFrame Frame
	spareAnc   Ancestor
	last       *Frame // the frame a source line belongs to

	// prefix is the number of prefix fields cut from every line: -1 until
	// a header is seen, then 0 (none) or the fields the first header had.
	prefix int
	// reasons are reason lines seen before the prefix was learned, by the
	// number of prefix fields before them.
	reasons [maxPrefixFields + 1]string
	// inDump is set once the "-----" line between the threads of a
	// GOTRACEBACK=crash dump is seen: the next reason line continues the
	// dump.
	inDump bool
}

// newDump starts a new dump, unless the current one is still empty.
func (p *parser) newDump() {
	if p.snap != nil && len(p.snap.Goroutines) == 0 {
		return
	}
	p.snap = &Snapshot{Goroutines: []Goroutine{}}
	p.dumps = append(p.dumps, p.snap)
	p.ids = make(map[int64]bool)
	p.g, p.anc = nil, nil
}

func (p *parser) run() error {
	p.prefix = -1
	for {
		line, rerr := p.readLine()
		if line != nil {
			p.n++
			if p.cut > 0 {
				p.snap.LongLines++
			}
			inside := p.st != stateText
			p.step(line)
			if rerr == io.EOF && (inside || p.st != stateText) {
				// A last line without its line ending, in a goroutine:
				// the input stops mid-line (a log cut, a process killed
				// while it wrote).
				p.snap.Cut = true
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			p.errs = append(p.errs, rerr)
			break
		}
	}
	switch p.st {
	case stateFile:
		p.snap.Cut = true
		p.fail("missing source line after the last function", nil)
	case stateCreatorFile:
		p.snap.Cut = true
		p.fail(`missing source line after the last "created by"`, nil)
	}
	if p.more > 0 {
		p.errs = append(p.errs, fmt.Errorf("%w: %d more unreadable lines", ErrParse, p.more))
	}
	return errors.Join(p.errs...)
}

// readLine returns the next line without its line ending, or nil at the
// end. The error is io.EOF only with the last line, if that has no line
// ending, or with nil. A line longer than maxLine is cut in its middle
// (p.cut says how many bytes), with a marker in their place.
func (p *parser) readLine() ([]byte, error) {
	p.cut = 0
	line, err := p.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		p.long, p.tail = p.long[:0], p.tail[:0]
		total := 0
		for {
			total += len(line)
			if n := maxLine - lineTail - len(p.long); n > 0 {
				k := min(n, len(line))
				p.long = append(p.long, line[:k]...)
				line = line[k:]
			}
			p.tail = append(p.tail, line...)
			if len(p.tail) > lineTail {
				p.tail = append(p.tail[:0], p.tail[len(p.tail)-lineTail:]...)
			}
			if err != bufio.ErrBufferFull {
				break
			}
			line, err = p.r.ReadSlice('\n')
		}
		if p.cut = total - len(p.long) - len(p.tail); p.cut > 0 {
			p.long = fmt.Appendf(p.long, "...[%d bytes cut]...", p.cut)
		}
		line = append(p.long, p.tail...)
	}
	if len(line) == 0 && err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, err
}

// unprefix cuts the learned prefix from line: n blank-separated fields and
// the blanks after them (not a tab, which starts a source line).
func (p *parser) unprefix(line []byte) []byte {
	if p.prefix <= 0 {
		return line
	}
	rest, ok := cutFields(line, p.prefix)
	if !ok {
		return nil // the prefix alone: an empty line
	}
	return rest
}

// cutFields cuts n fields, each a run of bytes other than blanks and tabs
// followed by blanks, from the start of line. It reports false if line has
// fewer.
func cutFields(line []byte, n int) ([]byte, bool) {
	for range n {
		i := 0
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			i++
		}
		if i == 0 || i == len(line) || line[i] != ' ' {
			return nil, false
		}
		for i < len(line) && line[i] == ' ' {
			i++
		}
		line = line[i:]
	}
	return line, true
}

// learnPrefix looks for a goroutine header or a reason line after a
// prefix that has a digit (a timestamp) in it, before any header was seen.
// It learns the prefix from a header, and opens its goroutine.
func (p *parser) learnPrefix(line []byte) bool {
	for n := 1; n <= maxPrefixFields; n++ {
		rest, ok := cutFields(line, n)
		if !ok {
			return false
		}
		if !bytes.ContainsAny(line[:len(line)-len(rest)], "0123456789") {
			continue
		}
		if isReason(rest) && p.reasons[n] == "" {
			p.reasons[n] = string(bytes.TrimSpace(rest))
		}
		if bytes.HasPrefix(rest, []byte("goroutine ")) && bytes.HasSuffix(rest, []byte("]:")) {
			p.prefix = n
			if p.snap.Reason == "" {
				p.snap.Reason = p.reasons[n]
			}
			if p.header(rest) {
				return true
			}
			p.prefix = -1
		}
	}
	return false
}

// step handles one line in the current state.
func (p *parser) step(line []byte) {
	line = p.unprefix(line)
	for {
		switch p.st {
		case stateText:
			p.text(line)
			return
		case stateFrame:
			if p.frame(line) {
				return
			}
			// The goroutine ended; the line is text.
			p.endGoroutine()
		case stateFile, stateCreatorFile:
			if p.file(line) {
				return
			}
			// Read the line again as whatever it is.
			p.st = stateFrame
		}
	}
}

func (p *parser) text(line []byte) {
	if p.header(line) {
		return
	}
	if p.prefix < 0 && p.learnPrefix(line) {
		return
	}
	if string(line) == "-----" {
		p.inDump = true // the next thread of a GOTRACEBACK=crash dump
		return
	}
	if isReason(line) {
		if !p.inDump {
			p.newDump() // a reason after goroutines opens the next dump
		}
		p.inDump = false
		if p.snap.Reason == "" {
			p.snap.Reason = string(bytes.TrimSpace(line))
		}
	}
}

func isReason(line []byte) bool {
	if bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, []byte("fatal error: ")) {
		return true
	}
	// "SIGQUIT: quit", "SIGSEGV: segmentation violation".
	i := bytes.Index(line, []byte(": "))
	if i <= 3 || !bytes.HasPrefix(line, []byte("SIG")) {
		return false
	}
	for _, c := range line[3:i] {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// frame handles a line in stateFrame. It returns false if the line ends the
// goroutine and must be read again as text.
func (p *parser) frame(line []byte) bool {
	switch {
	case len(line) == 0:
		p.endGoroutine()
		return true
	case p.header(line):
		return true
	case bytes.HasPrefix(line, []byte("created by ")):
		p.createdBy(line)
		p.st = stateCreatorFile
		return true
	case bytes.HasPrefix(line, []byte("[originating from goroutine ")):
		p.ancestor(line)
		return true
	case bytes.HasPrefix(line, []byte("...")) && bytes.HasSuffix(line, []byte(" frames elided...")):
		p.elided(line)
		return true
	case bytes.Equal(bytes.TrimSpace(line), []byte("goroutine running on other thread; stack unavailable")):
		p.g.StackUnavailable = true
		return true
	case bytes.HasPrefix(line, []byte("non-Go function at pc=")):
		p.addFrame(Frame{Func: p.str(line)}) // a cgo frame without a symbolizer
		return true
	case line[0] == '\t':
		p.fail("source line without a function line before it", line)
		return true
	}
	name, args, ok := splitCall(line)
	if !ok {
		return false
	}
	if !p.keeping() {
		p.addFrame(Frame{}) // read, not kept: no strings made
		p.st = stateFile
		return true
	}
	p.addFrame(Frame{Func: p.str(name), Args: p.str(args)})
	p.st = stateFile
	return true
}

// splitCall splits "pkg.(*T).f[...](0x1, {0x2, 0x3})" into the function
// and the arguments. A function name has no blanks, the arguments no
// parentheses.
func splitCall(line []byte) (name, args []byte, ok bool) {
	if line[len(line)-1] != ')' {
		return nil, nil, false
	}
	i := bytes.LastIndexByte(line, '(')
	if i <= 0 {
		return nil, nil, false
	}
	name, args = line[:i], line[i+1:len(line)-1]
	if bytes.ContainsAny(name, " \t") || bytes.ContainsAny(args, "()") {
		return nil, nil, false
	}
	return name, args, true
}

func (p *parser) addFrame(f Frame) {
	frames, elided := &p.g.Frames, &p.g.Elided
	if p.anc != nil {
		frames, elided = &p.anc.Frames, &p.anc.Elided
	}
	if !p.keeping() || p.retained >= p.limits.Retained {
		// Not kept: a goroutine past the bounds, or a frame past them
		// (said by an elision at the end of the goroutine's frames).
		if p.keeping() {
			if *elided == nil || (*elided).At != len(*frames) {
				*elided = &Elision{At: len(*frames)}
			}
			(*elided).Count++
		}
		p.spareFrame = f
		p.last = &p.spareFrame
		return
	}
	p.retained += frameCost
	*frames = append(*frames, f)
	p.last = &(*frames)[len(*frames)-1]
}

// lastFrame returns the frame a source line belongs to.
func (p *parser) lastFrame() *Frame {
	if p.st == stateCreatorFile {
		if p.anc != nil {
			return p.anc.CreatedBy
		}
		return p.g.CreatedBy
	}
	return p.last
}

// file handles a line in stateFile or stateCreatorFile: the source position
// of the frame just read. It returns false, after reporting the error, if
// the line is not indented, so that it is read again as whatever it is.
func (p *parser) file(line []byte) bool {
	f := p.lastFrame()
	if len(line) < 2 || line[0] != '\t' {
		p.fail("want the source line of "+f.Func, line)
		return false
	}
	// An indented line is the source line, readable or not.
	p.st = stateFrame
	if f == &p.spareFrame {
		return true // of a frame not kept
	}
	s := line[1:]
	if i := bytes.LastIndex(s, []byte(" fp=")); i >= 0 {
		s = s[:i] // fp=, sp=, pc= of GOTRACEBACK=system: addresses, not kept
	}
	if i := bytes.LastIndex(s, []byte(" +0x")); i >= 0 {
		off, err := strconv.ParseUint(string(s[i+4:]), 16, 64)
		if err != nil {
			p.fail("bad pc offset", line)
			return true
		}
		f.Offset = off
		s = s[:i]
	}
	i := bytes.LastIndexByte(s, ':')
	n, err := strconv.Atoi(string(s[i+1:]))
	if i < 0 || err != nil || n < 0 {
		p.fail("want file:line", line)
		return true
	}
	f.File, f.Line = p.str(s[:i]), n
	return true
}

// header reads a goroutine header, in any of its forms:
//
//	goroutine 1 [running]:
//	goroutine 7 gp=0xc000007340 m=nil [chan receive, 5 minutes]:
//	goroutine 9 gp=0xc000102a80 m=3 mp=0xc000100008 [syscall, locked to thread]:
//	goroutine 5 [select, 2 minutes, locked to thread labels:{"k": "v"}]:
//
// and opens a new goroutine. It returns false if line is no header.
func (p *parser) header(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("goroutine "))
	if !ok || !bytes.HasSuffix(rest, []byte("]:")) {
		return false
	}
	i := 0
	for i < len(rest) && '0' <= rest[i] && rest[i] <= '9' {
		i++
	}
	if i == 0 || i == len(rest) || rest[i] != ' ' {
		return false
	}
	id, err := strconv.ParseInt(string(rest[:i]), 10, 64)
	if err != nil {
		p.fail("bad goroutine id", line)
		return true
	}
	b := bytes.IndexByte(rest, '[')
	if b < 0 {
		p.fail("bad goroutine header", line)
		return true
	}
	// Between the id and "[": " gp=0x... m=N mp=0x..." (GOTRACEBACK=system).
	for _, f := range bytes.Fields(rest[i:b]) {
		if !bytes.HasPrefix(f, []byte("gp=")) && !bytes.HasPrefix(f, []byte("m=")) && !bytes.HasPrefix(f, []byte("mp=")) {
			p.fail("bad goroutine header", line)
			return true
		}
	}
	p.endGoroutine()
	if p.prefix < 0 {
		p.prefix = 0 // a header at the start of its line: no prefix
	}
	if id != 0 && p.ids[id] {
		p.newDump() // the same goroutine again: the next dump
	}
	p.st = stateFrame
	if p.kept >= p.limits.Goroutines || p.retained >= p.limits.Retained {
		// Past the bounds: read, counted, not kept.
		p.snap.Dropped++
		p.spare = Goroutine{ID: id}
		p.g = &p.spare
		return true
	}
	p.ids[id] = true
	p.kept++
	p.retained += goroutineCost
	p.snap.Goroutines = append(p.snap.Goroutines, Goroutine{ID: id, Frames: []Frame{}})
	p.g = &p.snap.Goroutines[len(p.snap.Goroutines)-1]
	p.status(p.g, rest[b+1:len(rest)-2], line)
	return true
}

// keeping reports whether the goroutine (or ancestor) being read is kept.
func (p *parser) keeping() bool { return p.g != &p.spare && p.anc != &p.spareAnc }

// status reads the bracketed part of a header: "chan receive, 5 minutes,
// locked to thread labels:{"k": "v"}". Annotations it does not know (a
// future Go's) are skipped.
func (p *parser) status(g *Goroutine, s, line []byte) {
	if i := bytes.Index(s, []byte(" labels:{")); i >= 0 {
		labels, ok := parseLabels(string(s[i+len(" labels:{"):]))
		if !ok {
			p.fail("bad goroutine labels", line)
		}
		g.Labels = labels
		p.retained += int64(len(labels)*labelCost + len(s) - i)
		s = s[:i]
	}
	state, rest, _ := bytes.Cut(s, []byte(", "))
	g.State = p.str(state)
	for len(rest) > 0 {
		var part []byte
		part, rest, _ = bytes.Cut(rest, []byte(", "))
		switch {
		case string(part) == "locked to thread":
			g.LockedToThread = true
		case bytes.HasSuffix(part, []byte(" minutes")):
			m, err := strconv.ParseInt(string(bytes.TrimSuffix(part, []byte(" minutes"))), 10, 64)
			if err != nil || m < 0 || m > int64(1<<63-1)/int64(time.Minute) {
				p.fail("bad wait time", line)
				continue
			}
			g.Wait = time.Duration(m) * time.Minute
		}
	}
}

// parseLabels reads `"k": "v", "k2": "v2"}` (Go-quoted strings).
func parseLabels(s string) (map[string]string, bool) {
	m := make(map[string]string)
	for {
		s = strings.TrimLeft(s, " ,")
		if s == "}" {
			return m, true
		}
		k, rest, ok := unquotePrefix(s)
		if !ok {
			return m, false
		}
		rest, ok = strings.CutPrefix(rest, ": ")
		if !ok {
			return m, false
		}
		v, rest, ok := unquotePrefix(rest)
		if !ok {
			return m, false
		}
		m[k] = v
		s = rest
	}
}

func unquotePrefix(s string) (v, rest string, ok bool) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", s, false
	}
	v, err = strconv.Unquote(q)
	return v, s[len(q):], err == nil
}

// createdBy reads "created by pkg.f" or "created by pkg.f in goroutine N".
func (p *parser) createdBy(line []byte) {
	name := line[len("created by "):]
	var creator int64
	if i := bytes.LastIndex(name, []byte(" in goroutine ")); i >= 0 {
		id, err := strconv.ParseInt(string(name[i+len(" in goroutine "):]), 10, 64)
		if err != nil {
			p.fail("bad creator goroutine", line)
		}
		name, creator = name[:i], id
	}
	f := &Frame{Func: p.str(name)}
	if p.anc != nil {
		p.anc.CreatedBy = f
	} else {
		p.g.CreatedBy, p.g.CreatorID = f, creator
	}
}

// ancestor reads "[originating from goroutine N]:" and makes the frames
// that follow the ancestor's.
func (p *parser) ancestor(line []byte) {
	s, ok := bytes.CutSuffix(line[len("[originating from goroutine "):], []byte("]:"))
	id, err := strconv.ParseInt(string(s), 10, 64)
	if !ok || err != nil {
		p.fail("bad ancestor header", line)
	}
	if !p.keeping() || p.retained >= p.limits.Retained {
		p.spareAnc = Ancestor{ID: id} // read, not kept
		p.anc = &p.spareAnc
		return
	}
	p.retained += goroutineCost
	p.g.Ancestors = append(p.g.Ancestors, Ancestor{ID: id, Frames: []Frame{}})
	p.anc = &p.g.Ancestors[len(p.g.Ancestors)-1]
}

// elided reads "...12 frames elided..." or "...additional frames elided...".
func (p *parser) elided(line []byte) {
	s := bytes.TrimSuffix(bytes.TrimPrefix(line, []byte("...")), []byte(" frames elided..."))
	e := &Elision{}
	if string(s) != "additional" {
		n, err := strconv.Atoi(string(s))
		if err != nil || n < 0 {
			p.fail("bad elided frame count", line)
		}
		e.Count = n
	}
	if p.anc != nil {
		e.At = len(p.anc.Frames)
		p.anc.Elided = e
	} else {
		e.At = len(p.g.Frames)
		p.g.Elided = e
	}
}

func (p *parser) endGoroutine() {
	p.g, p.anc = nil, nil
	p.st = stateText
}

// fail records an unreadable line.
func (p *parser) fail(what string, line []byte) {
	if len(p.errs) >= maxErrors {
		p.more++
		return
	}
	if line == nil {
		p.errs = append(p.errs, fmt.Errorf("%w: line %d: %s", ErrParse, p.n, what))
		return
	}
	if len(line) > 200 {
		line = append(line[:200:200], "..."...)
	}
	p.errs = append(p.errs, fmt.Errorf("%w: line %d: %s: %q", ErrParse, p.n, what, line))
}

// str returns b as a string, the same string for the same bytes: a dump
// of 10,000 goroutines names few distinct functions and files.
func (p *parser) str(b []byte) string {
	if s, ok := p.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	p.retained += int64(len(s))
	if len(p.intern) < 1<<16 {
		p.intern[s] = s
	}
	return s
}
