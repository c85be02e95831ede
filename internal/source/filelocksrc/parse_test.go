package filelocksrc

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name, line string
		want       Entry
		err        string
	}{
		{"flock", "1: FLOCK  ADVISORY  WRITE 18313 fe:00:9978082 0 EOF",
			Entry{ID: 1, Class: "FLOCK", Mode: "ADVISORY", Type: "WRITE", PID: 18313, Major: 0xfe, Inode: 9978082, End: -1}, ""},
		{"waiter", "1: -> FLOCK  ADVISORY  WRITE 18321 fe:00:9978082 0 EOF",
			Entry{ID: 1, Depth: 1, Class: "FLOCK", Mode: "ADVISORY", Type: "WRITE", PID: 18321, Major: 0xfe, Inode: 9978082, End: -1}, ""},
		{"waiter of a waiter", "1:  -> FLOCK  ADVISORY  READ 18323 fe:00:9978082 0 EOF",
			Entry{ID: 1, Depth: 2, Class: "FLOCK", Mode: "ADVISORY", Type: "READ", PID: 18323, Major: 0xfe, Inode: 9978082, End: -1}, ""},
		{"posix range", "12: POSIX  ADVISORY  READ 42 08:01:1234 100 199",
			Entry{ID: 12, Class: "POSIX", Mode: "ADVISORY", Type: "READ", PID: 42, Major: 8, Minor: 1, Inode: 1234, Start: 100, End: 199}, ""},
		{"ofd, owner unknown", "3: OFDLCK ADVISORY  WRITE -1 00:2f:77 0 EOF",
			Entry{ID: 3, Class: "OFDLCK", Mode: "ADVISORY", Type: "WRITE", PID: -1, Minor: 0x2f, Inode: 77, End: -1}, ""},
		{"mandatory (before 5.15)", "4: POSIX  MANDATORY WRITE 7 08:02:9 0 0",
			Entry{ID: 4, Class: "POSIX", Mode: "MANDATORY", Type: "WRITE", PID: 7, Major: 8, Minor: 2, Inode: 9}, ""},
		{"lease", "5: LEASE  ACTIVE    READ 99 fd:01:5 0 EOF",
			Entry{ID: 5, Class: "LEASE", Mode: "ACTIVE", Type: "READ", PID: 99, Major: 0xfd, Minor: 1, Inode: 5, End: -1}, ""},
		{"no inode", "6: POSIX  *NOINODE* WRITE 8 <none>:0 0 EOF",
			Entry{ID: 6, Class: "POSIX", Mode: "*NOINODE*", Type: "WRITE", PID: 8, NoInode: true, End: -1}, ""},
		{"pid not in this namespace", "7: -> POSIX  ADVISORY  WRITE 0 08:01:1 0 EOF",
			Entry{ID: 7, Depth: 1, Class: "POSIX", Mode: "ADVISORY", Type: "WRITE", Major: 8, Minor: 1, Inode: 1, End: -1}, ""},
		{"no id", "FLOCK  ADVISORY  WRITE 1 fe:00:1 0 EOF", Entry{}, "id"},
		{"no colon", "FLOCK  ADVISORY  WRITE 1 fe 0 EOF", Entry{}, "no id"},
		{"class", "1: FCNTL ADVISORY WRITE 1 fe:00:1 0 EOF", Entry{}, "class"},
		{"type", "1: FLOCK ADVISORY BOTH 1 fe:00:1 0 EOF", Entry{}, "type"},
		{"pid", "1: FLOCK ADVISORY WRITE -2 fe:00:1 0 EOF", Entry{}, "pid"},
		{"device", "1: FLOCK ADVISORY WRITE 1 fe:1 0 EOF", Entry{}, "device:inode"},
		{"end before start", "1: POSIX ADVISORY WRITE 1 fe:00:1 10 9", Entry{}, "end"},
		{"too few fields", "1: POSIX ADVISORY WRITE 1 fe:00:1 10", Entry{}, "fields"},
		{"indented, no arrow", "1:   POSIX ADVISORY WRITE 1 fe:00:1 0 EOF", Entry{}, "indented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine(tt.line)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseLine(%q) = %+v, %v; want an error about %s", tt.line, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseLine(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
			}
		})
	}
}

// format prints an entry as the kernel does (lock_get_status).
func format(e Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d: ", e.ID)
	if e.Depth > 0 {
		fmt.Fprintf(&b, "%*s", e.Depth-1+3, "-> ")
	}
	switch e.Class {
	case "FLOCK":
		fmt.Fprintf(&b, "FLOCK  %-9s ", e.Mode)
	case "LEASE", "DELEG":
		fmt.Fprintf(&b, "%-5s  %-8s  ", e.Class, e.Mode)
	default:
		fmt.Fprintf(&b, "%-6s %-9s ", e.Class, e.Mode)
	}
	fmt.Fprintf(&b, "%s %d ", e.Type, e.PID)
	if e.NoInode {
		b.WriteString("<none>:0 ")
	} else {
		fmt.Fprintf(&b, "%02x:%02x:%d ", e.Major, e.Minor, e.Inode)
	}
	if e.End < 0 {
		fmt.Fprintf(&b, "%d EOF", e.Start)
	} else {
		fmt.Fprintf(&b, "%d %d", e.Start, e.End)
	}
	return b.String()
}

func TestParse(t *testing.T) {
	table := strings.Join([]string{
		"1: FLOCK  ADVISORY  WRITE 10 fe:00:1 0 EOF",
		"1: -> FLOCK  ADVISORY  WRITE 11 fe:00:1 0 EOF",
		"1:  -> FLOCK  ADVISORY  READ 12 fe:00:1 0 EOF",
		"2: POSIX  ADVISORY  WRITE ?? fe:00:2 0 EOF", // unreadable: its waiters must go with it
		"2: -> POSIX  ADVISORY  WRITE 13 fe:00:2 0 EOF",
		"3: POSIX  ADVISORY  WRITE 14 fe:00:3 0 EOF",
		"4: -> POSIX  ADVISORY  WRITE 15 fe:00:3 0 EOF",   // numbered as another lock's
		"3:   -> POSIX  ADVISORY  WRITE 16 fe:00:3 0 EOF", // three levels under one
		"3: -> POSIX  ADVISORY  WRITE 17 fe:00:3 0 EOF",
		"", // blank lines are nothing
		"5: OFDLCK ADVISORY  READ -1 fe:00:4 0 99",
	}, "\n")
	p := Parse([]byte(table), Limits{})
	var pids []int
	for _, e := range p.Entries {
		pids = append(pids, e.PID)
	}
	if fmt.Sprint(pids) != "[10 11 12 14 17 -1]" {
		t.Errorf("kept the entries of pids %v; want [10 11 12 14 17 -1]", pids)
	}
	if p.Errors != 3 || p.Dropped != 4 || !errors.Is(p.Err, ErrParse) {
		t.Errorf("errors %d, dropped %d, err %v; want 3 errors (ErrParse), 4 lines dropped", p.Errors, p.Dropped, p.Err)
	}
	for _, want := range []string{"line 4", "line 7", "line 8"} {
		if !strings.Contains(fmt.Sprint(p.Err), want) {
			t.Errorf("errors %q do not name %s", p.Err, want)
		}
	}

	p = Parse([]byte(table), Limits{MaxEntries: 5, MaxErrors: 1})
	if len(p.Entries) != 5 || p.Over != 1 || p.Errors != 3 || strings.Count(fmt.Sprint(p.Err), "unreadable lock line") != 1 {
		t.Errorf("with limits: %d entries, %d over, %d errors, err %q; want 5 kept, 1 counted, 3 errors of which one kept", len(p.Entries), p.Over, p.Errors, p.Err)
	}
	long := "1: FLOCK  ADVISORY  WRITE 10 fe:00:1 0 " + strings.Repeat("9", 600)
	if p := Parse([]byte(long), Limits{}); len(p.Entries) != 0 || p.Errors != 1 {
		t.Errorf("a 640-byte line: %+v; want it refused", p)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"1: FLOCK  ADVISORY  WRITE 18313 fe:00:9978082 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 18321 fe:00:9978082 0 EOF\n1:  -> FLOCK  ADVISORY  READ 18323 fe:00:9978082 0 EOF\n",
		"2: POSIX  ADVISORY  READ 42 08:01:1234 100 199\n3: OFDLCK ADVISORY  WRITE -1 00:2f:77 0 EOF\n3: -> OFDLCK ADVISORY  WRITE -1 00:2f:77 0 0\n",
		"4: LEASE  ACTIVE    READ 99 fd:01:5 0 EOF\n5: POSIX  *NOINODE* WRITE 8 <none>:0 0 EOF\n",
		"1: -> POSIX ADVISORY WRITE 1 fe:00:1 0 EOF\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := Parse(b, Limits{MaxEntries: 64})
		if len(p.Entries) > 64 {
			t.Fatalf("%d entries; limit 64", len(p.Entries))
		}
		var root *Entry
		for i := range p.Entries {
			e := &p.Entries[i]
			if e.Depth == 0 {
				root = e
				continue
			}
			if root == nil || e.ID != root.ID {
				t.Fatalf("request %+v under %+v", e, root)
			}
		}
		for _, e := range p.Entries {
			again, err := ParseLine(format(e))
			if err != nil || again != e {
				t.Fatalf("entry %+v printed as %q reads back as %+v, %v", e, format(e), again, err)
			}
		}
	})
}

func ExampleParseLine() {
	e, err := ParseLine("1: -> OFDLCK ADVISORY  WRITE -1 fe:00:9978082 100 199")
	fmt.Println(e.Class, e.Type, e.PID, e.Dev(), e.Inode, e.Range(), e.Depth, err)
	// Output: OFDLCK WRITE -1 fe:00 9978082 100-199 1 <nil>
}

// FuzzParseLine checks the byte parser of lock lines against the one on
// strings (which reads the lines with bytes outside ASCII): the same
// entry, or the same error (with whatever entry), for any line.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"1: FLOCK  ADVISORY  WRITE 18313 fe:00:9978082 0 EOF",
		"1:  -> OFDLCK ADVISORY  READ -1 fe:00:9978082 100 199",
		"12: POSIX  ADVISORY  READ 42 08:01:1234 100 199",
		"4: LEASE  ACTIVE    READ 99 fd:01:5 0 EOF",
		"5: POSIX  *NOINODE* WRITE 8 <none>:0 0 EOF",
		"7: UNKNOWN UNKNOWN  WRITE 0 08:01:1 +0 -0",
		" 9223372036854775807 : POSIX ADVISORY WRITE 2147483647 ffffffff:FFFFFFFF:18446744073709551615 0 9223372036854775807",
		"1: POSIX ADVISORY WRITE -2147483649 fe:00:1 0 EOF",
		"1: POSIX ADVISORY WRITE 1 fe:00:1:2 0 EOF",
		"1:\tPOSIX ADVISORY WRITE 1 fe:00:1 0 EOF",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseLine(b)
		want, wantErr := parseLineText(string(b))
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || err == nil && got != want {
			t.Fatalf("parseLine(%q) = %+v, %v; parseLineText: %+v, %v", b, got, err, want, wantErr)
		}
	})
}

// Parsing the lock table allocates nothing per line.
func TestParseAllocs(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "%d: POSIX  ADVISORY  WRITE 4242 fe:00:9978082 %d %d\n%d: -> POSIX  ADVISORY  WRITE 4243 fe:00:9978082 %d %d\n", i+1, 2*i, 2*i, i+1, 2*i, 2*i)
	}
	table := []byte(b.String())
	allocs := testing.AllocsPerRun(5, func() {
		if p := Parse(table, Limits{}); len(p.Entries) != 2000 {
			t.Fatalf("%d entries; want 2000", len(p.Entries))
		}
	})
	if allocs > 2 {
		t.Errorf("Parse of 2,000 lines: %.0f allocations; want at most 2 (the entries, the joined error)", allocs)
	}
}
