// Package stackdump parses and groups goroutine stacks.
//
// It reads the three forms a Go process's goroutines come in: traceback
// text from anywhere (Parse: a SIGQUIT dump, a panic, runtime.Stack, a
// file), with goroutine ids, states and wait times; the pprof goroutine
// profile (ParseProfile), which stops the process far more briefly but has
// only stacks, counts and labels; and a short execution trace (ParseTrace),
// which has ids, states and stacks. It groups goroutines that have the same
// stack (GroupGoroutines, GroupSamples).
//
//	s, err := stackdump.Parse(os.Stdin)
//	if err != nil {
//		return err
//	}
//	for _, g := range stackdump.GroupGoroutines(s.Goroutines, stackdump.IgnoreArgs) {
//		g.Write(w)
//	}
//
// stackdump takes no dump itself (lockwatch's probe does, inside the
// program), and knows nothing of locks or of the command line.
//
// # Cost of a dump
//
// The text dump stops the world for its whole length: at 10,000 goroutines
// it took 48 ms on a 2-core VM, and a busy goroutine stood still for up to
// 84 ms. The protobuf profile took 39 ms there, but that goroutine stood
// still for at most 10 ms. The benchmarks in this package measure the
// three forms, with the longest pause a busy goroutine sees (the pause-ms
// metric).
//
// # Formats read
//
// Parse reads what Go 1.17 and later print: SIGQUIT dumps, panics, fatal
// errors, the panic of `go test -timeout`, runtime.Stack and pprof debug=2
// output, with any other text around them (test output, log lines,
// register dumps). Headers may carry "gp= m= mp=" fields (GOTRACEBACK=system
// or crash), wait times ("5 minutes"), "locked to thread", synctest bubbles
// and labels (GODEBUG=tracebacklabels=1). Goroutine creators are read with
// and without " in goroutine N" (Go 1.21), elided frames in both forms
// ("...N frames elided...", and "...additional frames elided..." before Go
// 1.21), and ancestors ("[originating from goroutine N]:",
// GODEBUG=tracebackancestors=N).
//
// # The parser
//
// Parse is a state machine over lines. In each state it expects some
// lines, and each line it reads says where to go next:
//
//	state        expects                                  next
//	text         goroutine N [...]:                       frame
//	             any other line (text around the dump)    text
//	frame        pkg.f(args)                              file
//	             ...N frames elided...                    frame
//	             \tgoroutine running on other thread...   frame
//	             created by pkg.f[ in goroutine N]        creator-file
//	             [originating from goroutine N]:          frame (ancestor's frames)
//	             goroutine N [...]:                       frame (next goroutine)
//	             empty line                               text
//	             other indented line                      frame, error
//	             any other line                           text, read again
//	file         \tfile:line[ +0x1d][ fp= sp= pc=]        frame
//	             other indented line                      frame, error
//	             any other line                           frame, error, read again
//	creator-file as file
//
// Each error quotes its line and wraps ErrParse; Parse returns all it read
// and the errors joined.
//
// Before a line reaches its state, a learned prefix is cut from it (a
// timestamp before every line, learned from the first goroutine header that
// follows one), and a line over 64 KiB keeps its start and its end with
// "...[N bytes cut]..." between them, so that its frame is still read. A
// reason line ("panic: ", "fatal error: ", "SIGQUIT: quit") after goroutines,
// or a goroutine id seen twice, starts the next dump: ParseDumps returns each
// dump apart, Parse the first. A dump whose input stops mid-line or after a
// function line is marked Cut.
//
// # Fixtures
//
// testdata/*.txt are dumps made by the programs in testdata/gen (run
// `go test -run TestGolden -update` to make them again with the Go at hand)
// and, named hand-*.txt, samples of older formats written by hand.
// testdata/*.json are what Parse reads from them.
package stackdump
