package clientproc

import (
	"net"
	"net/netip"
	"os"
	"testing"
)

// TestParseTCP reads lines of /proc/net/tcp and tcp6 as the kernel writes
// them: an established socket, an orphaned one (inode 0), a listener (not
// a client's end), and an IPv4-mapped address of a tcp6 socket.
func TestParseTCP(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A5A4 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1
   1: 02E7FEA9:EBE0 01E7FEA9:AD8F 04 00000001:00000000 01:00000025 00000003     0        0 0 3 0000000000000000 20 4 0 10 -1
   2: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 999 1 0000000000000000 100 0 0 10 0
   0: 0000000000000000FFFF00000100007F:A5A6 0000000000000000FFFF00000100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 20 4 30 10 -1
`)
	want := map[string][]int{
		tcpKey(netip.MustParseAddr("127.0.0.1"), 0xA5A4, 0x1538):     {0},
		tcpKey(netip.MustParseAddr("169.254.231.2"), 0xEBE0, 0xAD8F): {1},
		tcpKey(netip.MustParseAddr("127.0.0.1"), 0x1538, 0):          {2},
		tcpKey(netip.MustParseAddr("127.0.0.1"), 0xA5A6, 0x1538):     {3},
	}
	// The ports of the wanted keys, which let a line with others be
	// skipped unread; nil reads every line.
	pairs := map[[2]uint16]bool{{0xA5A4, 0x1538}: true, {0xEBE0, 0xAD8F}: true, {0xA5A6, 0x1538}: true} // not the listener's
	for _, pairs := range []map[[2]uint16]bool{nil, pairs} {
		got := map[string]sock{}
		var listeners []sock
		for _, s := range parseTCP(table, "net:[1]", want, map[int]bool{0x1538: true, 0xAD8F: true}, pairs) {
			if s.state == "LISTEN" {
				listeners = append(listeners, s)
				continue
			}
			got[s.key] = s
		}
		if len(listeners) != 1 || listeners[0].remote != netip.MustParseAddrPort("127.0.0.1:5432") {
			t.Errorf("listeners %+v; want 127.0.0.1:5432", listeners)
		}
		tests := []struct {
			key   string
			state string
			inode uint64
			uid   int
		}{
			{tcpKey(netip.MustParseAddr("127.0.0.1"), 0xA5A4, 0x1538), "ESTABLISHED", 123456, 0},
			{tcpKey(netip.MustParseAddr("169.254.231.2"), 0xEBE0, 0xAD8F), "FIN-WAIT-1", 0, 0},
			{tcpKey(netip.MustParseAddr("127.0.0.1"), 0xA5A6, 0x1538), "ESTABLISHED", 777, 1000},
		}
		for _, tt := range tests {
			s, ok := got[tt.key]
			if !ok || s.state != tt.state || s.inode != tt.inode || s.uid != tt.uid {
				t.Errorf("socket %s = %+v (found %v); want state %s inode %d uid %d", tt.key, s, ok, tt.state, tt.inode, tt.uid)
			}
		}
		if len(got) != len(tests) {
			t.Errorf("parsed %d sockets; want %d (the listener is no client's end): %+v", len(got), len(tests), got)
		}
	}
}

// TestFindSelf: a connection this process makes is found, its client end
// held by this process; a port no socket has is not found, and is no
// proof of anything.
func TestFindSelf(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.Accept() // kept open: the connection outlives the listener below
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	serverPort := l.Addr().(*net.TCPAddr).Port
	ends := Find([]Conn{
		{Addr: local.Addr(), Port: int(local.Port()), ServerPort: serverPort},
		{Addr: local.Addr(), Port: int(local.Port()), ServerPort: serverPort + 1},
	})
	// The socket's other end must be the server: a listener here, or the
	// address lockwatch reached it at.
	if !ends[0].Found {
		t.Fatalf("not found through its listener: %+v", ends[0])
	}
	l.Close() // no listener now: found only through Server
	if e := Find([]Conn{{Addr: local.Addr(), Port: int(local.Port()), ServerPort: serverPort}})[0]; e.Found {
		t.Errorf("found %+v with no listener and no server address; want not found", e)
	}
	if e := Find([]Conn{{Addr: local.Addr(), Port: int(local.Port()), ServerPort: serverPort, Server: l.Addr().(*net.TCPAddr).AddrPort()}})[0]; !e.Found {
		t.Errorf("not found through the server's address: %+v", e)
	}
	e := ends[0]
	if !e.Found || e.Closed || len(e.Procs) != 1 || e.Procs[0].PID != os.Getpid() {
		t.Errorf("the test's own connection: %+v; want found, open, held by pid %d", e, os.Getpid())
	}
	if ends[1].Found || ends[1].Closed || ends[1].Why == "" {
		t.Errorf("a connection nobody has: %+v; want not found, not closed, and why", ends[1])
	}
	// A process named as a session's backend is read last, not left out:
	// a backend can be a client itself (dblink, postgres_fdw).
	e = Find([]Conn{{Addr: local.Addr(), Port: int(local.Port()), ServerPort: serverPort, Server: l.Addr().(*net.TCPAddr).AddrPort(), Backend: os.Getpid()}})[0]
	if !e.Found || len(e.Procs) != 1 || e.Procs[0].PID != os.Getpid() {
		t.Errorf("a connection of a process named as a backend: %+v; want it held by pid %d", e, os.Getpid())
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/run/netns/a\040b`); got != "/run/netns/a b" {
		t.Errorf("unescapeMount = %q; want %q", got, "/run/netns/a b")
	}
	if got := startTimeOK(t); got == 0 {
		t.Error("startTime of this process is 0")
	}
}

func startTimeOK(t *testing.T) uint64 {
	st, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSocketInode reads descriptor links as the kernel writes them, and
// takes nothing else for a socket.
func TestSocketInode(t *testing.T) {
	for _, tt := range []struct {
		link string
		ino  uint64
		ok   bool
	}{
		{"socket:[123456]", 123456, true},
		{"socket:[0]", 0, true},
		{"socket:[18446744073709551615]", 1<<64 - 1, true},
		{"socket:[18446744073709551616]", 0, false},
		{"socket:[12", 0, false},
		{"socket:[]", 0, false},
		{"socket:[1a]", 0, false},
		{"pipe:[123]", 0, false},
		{"/tmp/socket:[1]", 0, false},
	} {
		if ino, ok := socketInode([]byte(tt.link)); ino != tt.ino || ok != tt.ok {
			t.Errorf("socketInode(%q) = %d, %v; want %d, %v", tt.link, ino, ok, tt.ino, tt.ok)
		}
	}
}
