// Package clientproc finds, for the sessions of a PostgreSQL server, the
// processes of this machine at the other end of their connections: a TCP
// session's client address and port are looked for as the local end of a
// socket in /proc/net/tcp and tcp6 of every network namespace of the
// machine (those of its processes, and those kept by a bind mount, such as
// ip netns's), and the socket's inode in /proc/PID/fd of every process. A
// unix-socket session's server end is found in its backend's /proc/PID/fd
// and its peer through the kernel's sock_diag.
//
// A socket found with inode 0 has been closed by every process that held
// it (the kernel has orphaned it: FIN-WAIT, CLOSING, TIME-WAIT): the
// session's client can no longer end its transaction. That is the one
// proof this package gives that a client is gone; not finding a socket
// proves nothing (the client may be on another machine).
//
//	ends := clientproc.Find([]clientproc.Conn{{Addr: addr, Port: 51234, ServerPort: 5432}})
package clientproc

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A Conn is a session's connection as its server sees it.
type Conn struct {
	// Addr and Port are the client's end of a TCP connection; Addr is
	// invalid for a unix-socket session.
	Addr netip.Addr
	Port int
	// ServerPort is the server's port, to tell the connection apart from
	// others of the same client address and port.
	ServerPort int
	// Server is the server's address as a client of this machine reaches
	// it (lockwatch's own connection's), if known: a socket is the
	// client's end only if its other end is the server: this address, or
	// an address the server listens on here.
	Server netip.AddrPort
	// Backend is the session's server process: a unix-socket session's
	// peer is found from it (the server then runs on this machine). The
	// backends of every conn are read last when looking for the processes
	// that hold the clients' sockets: a backend holds the server's end
	// (and a client's only when it is one itself, through dblink or
	// postgres_fdw), and a busy server has a thousand of them.
	Backend int
}

// An End is what was found of a connection's client end on this machine.
type End struct {
	// Found: the client's end is a socket of this machine.
	Found bool
	// Procs hold the socket open (several after a fork): the client.
	Procs []Proc
	// Closed: the socket was found with no file: every process that held
	// it closed it or died, and the server has not noticed.
	Closed bool
	// State is the TCP state of the client's end (ESTABLISHED, FIN-WAIT-1).
	State string
	// NetNS is its network namespace, "net:[4026532281]".
	NetNS string
	// Inode is the socket's inode (0 when Closed).
	Inode uint64
	// Why says why nothing more is known: "no socket of this machine has
	// that address", "2 sockets in 2 network namespaces match".
	Why string
}

// A Proc is a process of this machine.
type Proc struct {
	PID   int
	Start uint64 // /proc/PID/stat field 22
}

// maxTable bounds how much of one /proc/net table is read.
const maxTable = 256 << 20

// Find looks for the client end of each conn; ends[i] is conns[i]'s.
func Find(conns []Conn) []End {
	ends := make([]End, len(conns))
	want := map[string][]int{} // "addr:port>serverport" -> conns
	for i, c := range conns {
		if c.Addr.IsValid() {
			k := tcpKey(c.Addr, c.Port, c.ServerPort)
			want[k] = append(want[k], i)
		}
	}
	inodes := map[uint64][]int{} // socket inode -> conns whose client holds it
	uids := map[uint64]int{}     // socket inode -> who made it; -1 not known
	if len(want) > 0 {
		ports := map[int]bool{} // the servers' ports: their listeners are read too
		pairs := map[[2]uint16]bool{}
		for _, c := range conns {
			ports[c.ServerPort] = true
			if c.Addr.IsValid() {
				pairs[[2]uint16{uint16(c.Port), uint16(c.ServerPort)}] = true
			}
		}
		found := map[int][]sock{}
		var listeners []sock
		for _, ns := range namespaces() {
			for _, s := range ns.read(want, ports, pairs) {
				if s.state == "LISTEN" {
					listeners = append(listeners, s)
					continue
				}
				for _, i := range want[s.key] {
					if server(s, conns[i], listeners) {
						found[i] = append(found[i], s)
					}
				}
			}
		}
		// Listeners read after a namespace's sockets: check those again.
		for i := range found {
			found[i] = slices.DeleteFunc(found[i], func(s sock) bool { return !server(s, conns[i], listeners) })
		}
		for i, c := range conns {
			if !c.Addr.IsValid() {
				continue
			}
			fs := found[i]
			switch {
			case len(fs) == 0:
				ends[i].Why = fmt.Sprintf("no socket of this machine has the address %s", netip.AddrPortFrom(c.Addr, uint16(c.Port)))
			case len(fs) > 1:
				ends[i].Why = fmt.Sprintf("%d sockets of this machine (in several network namespaces) have the address %s", len(fs), netip.AddrPortFrom(c.Addr, uint16(c.Port)))
			default:
				s := fs[0]
				ends[i] = End{Found: true, State: s.state, NetNS: s.ns, Inode: s.inode, Closed: s.inode == 0}
				if s.inode != 0 {
					inodes[s.inode] = append(inodes[s.inode], i)
					uids[s.inode] = s.uid
				}
			}
		}
	}
	for i, c := range conns {
		if c.Addr.IsValid() || c.Backend <= 0 {
			continue
		}
		peer, why := unixPeer(c.Backend, c.ServerPort)
		if peer == 0 {
			ends[i].Why = why
			continue
		}
		ends[i] = End{Found: true, State: "connected (unix socket)", Inode: peer}
		inodes[peer] = append(inodes[peer], i)
		uids[peer] = -1
	}
	if len(inodes) > 0 {
		backends := map[int]bool{}
		for _, c := range conns {
			if c.Backend > 0 {
				backends[c.Backend] = true
			}
		}
		holders, complete := holdersOf(uids, backends)
		for ino, is := range inodes {
			for _, i := range is {
				ends[i].Procs = holders[ino]
				if len(holders[ino]) == 0 {
					ends[i].Why = "no process of this machine that lockwatch can read holds its socket open"
					if !complete {
						ends[i].Why += " (some processes' descriptors could not be read)"
					}
				}
			}
		}
	}
	return ends
}

// server reports whether a socket's other end is the server of c: the
// address lockwatch reached it at, or one it listens on here (any address
// of this machine when it listens on all of them).
func server(s sock, c Conn, listeners []sock) bool {
	r := netip.AddrPortFrom(s.remote.Addr().Unmap(), s.remote.Port())
	if c.Server.IsValid() && r == netip.AddrPortFrom(c.Server.Addr().Unmap(), c.Server.Port()) {
		return true
	}
	for _, l := range listeners {
		if l.remote.Port() == r.Port() && (l.remote.Addr() == r.Addr() || l.remote.Addr().IsUnspecified()) {
			return true
		}
	}
	return false
}

func tcpKey(a netip.Addr, port, serverPort int) string {
	return netip.AddrPortFrom(a.Unmap(), uint16(port)).String() + ">" + strconv.Itoa(serverPort)
}

// sock is a socket of a /proc/net/tcp table.
type sock struct {
	key    string
	ns     string
	state  string
	inode  uint64
	uid    int            // who made it
	remote netip.AddrPort // its other end; for a listener, its own address
}

// netns is a network namespace and a way to read its tables.
type netns struct {
	name string // net:[inode]
	pid  int    // a process in it; 0: enter path
	path string // a bind mount of it (ip netns, docker)
}

// namespaces lists the network namespaces of this machine that can be
// read: those of its processes, then those kept by a bind mount.
func namespaces() []netns {
	var out []netns
	seen := map[string]bool{}
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		name, err := os.Readlink("/proc/" + d.Name() + "/ns/net")
		if err != nil || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, netns{name: name, pid: pid})
	}
	for _, p := range nsMounts() {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil {
			continue
		}
		name := fmt.Sprintf("net:[%d]", st.Ino)
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, netns{name: name, path: p})
	}
	return out
}

// nsMounts lists the mount points of namespace files (fstype nsfs) that
// name network namespaces.
func nsMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(f, maxTable))
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "nsfs ") {
			continue
		}
		fs := strings.Fields(pre)
		if len(fs) < 5 || !strings.HasPrefix(fs[3], "net:[") {
			continue
		}
		out = append(out, unescapeMount(fs[4]))
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// read returns the sockets of the namespace's TCP tables whose local end
// is wanted.
func (n netns) read(want map[string][]int, ports map[int]bool, pairs map[[2]uint16]bool) []sock {
	var out []sock
	tables := func(dir string) {
		for _, t := range []string{"tcp", "tcp6"} {
			b, err := readBounded(dir + "/" + t)
			if err == nil {
				out = append(out, parseTCP(b, n.name, want, ports, pairs)...)
			}
		}
	}
	if n.pid > 0 {
		tables("/proc/" + strconv.Itoa(n.pid) + "/net")
		return out
	}
	// A namespace no process is in: enter it on a thread of our own.
	// That needs CAP_SYS_ADMIN; without it the namespace is not read.
	fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			return
		}
		defer unix.Close(self)
		if unix.Setns(fd, unix.CLONE_NEWNET) != nil {
			runtime.UnlockOSThread()
			return
		}
		tables("/proc/thread-self/net")
		if unix.Setns(self, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked, and exits with the goroutine
	}()
	<-done
	return out
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxTable))
}

var tcpStates = map[string]string{"01": "ESTABLISHED", "02": "SYN-SENT", "03": "SYN-RECV", "04": "FIN-WAIT-1", "05": "FIN-WAIT-2",
	"06": "TIME-WAIT", "07": "CLOSE", "08": "CLOSE-WAIT", "09": "LAST-ACK", "0A": "LISTEN", "0B": "CLOSING"}

// parseTCP reads the sockets of a /proc/net/tcp or tcp6 table whose local
// end is wanted, and the listeners on ports (with their own address as
// remote). Each line after the header is "sl local rem st queues timer retrnsmt uid timeout inode ...",
// addresses in hex (each 32-bit word in the host's byte order). pairs,
// when not nil, are the wanted keys' (local port, remote port): a line
// with other ports and no listener's is skipped before its addresses are
// read (on a database server, half the lines are the server's ends).
func parseTCP(b []byte, ns string, want map[string][]int, ports map[int]bool, pairs map[[2]uint16]bool) []sock {
	var out []sock
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		fs := bytes.Fields(line)
		if len(fs) < 10 || bytes.Equal(fs[0], []byte("sl")) {
			continue
		}
		if pairs != nil {
			lp, ok1 := hexPort(fs[1])
			rp, ok2 := hexPort(fs[2])
			if ok1 && ok2 && !pairs[[2]uint16{lp, rp}] && !(string(fs[3]) == "0A" && ports[int(lp)]) {
				continue
			}
		}
		local, ok1 := parseAddr(string(fs[1]))
		remote, ok2 := parseAddr(string(fs[2]))
		if !ok1 || !ok2 {
			continue
		}
		key := tcpKey(local.Addr(), int(local.Port()), int(remote.Port()))
		_, wanted := want[key]
		listener := string(fs[3]) == "0A" && ports[int(local.Port())]
		if !wanted && !listener {
			continue
		}
		inode, err := strconv.ParseUint(string(fs[9]), 10, 64)
		if err != nil {
			continue
		}
		uid, err := strconv.Atoi(string(fs[7]))
		if err != nil {
			uid = -1
		}
		st := tcpStates[string(fs[3])]
		switch {
		case listener:
			out = append(out, sock{ns: ns, state: st, remote: local})
			continue
		case st == "" || st == "LISTEN":
			continue
		}
		out = append(out, sock{key: key, ns: ns, state: st, inode: inode, uid: uid, remote: remote})
	}
	return out
}

// hexPort reads the port of an address of a /proc/net/tcp table, the
// four hex digits after its colon, without allocating.
func hexPort(f []byte) (uint16, bool) {
	i := bytes.LastIndexByte(f, ':')
	if i < 0 || len(f)-i-1 != 4 {
		return 0, false
	}
	var p uint16
	for _, c := range f[i+1:] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		p = p<<4 | uint16(c)
	}
	return p, true
}

// parseAddr reads "0100007F:1F90" or a 32-digit IPv6 address and a port.
func parseAddr(s string) (netip.AddrPort, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	// Each 32-bit word is in the host's byte order: little-endian here
	// (lockwatch runs on little-endian Linux machines: amd64, arm64).
	for w := 0; w < len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// holdersOf finds the processes whose descriptors are the sockets of
// inodes (each with the uid that made it, -1 if not known). complete is
// false when some process's descriptors could not be read (another
// user's, without privilege). The processes of the sockets' makers are
// read first, but for the server's backends, known or by uid (on a
// database server, the server's own processes are most of them and hold
// none of its clients' sockets); the others only for sockets none of
// those holds, so that a socket whose process changed its uid after
// making it, or a backend that is a client itself, is still found.
func holdersOf(inodes map[uint64]int, backends map[int]bool) (map[uint64][]Proc, bool) {
	out := map[uint64][]Proc{}
	ds, err := os.ReadDir("/proc")
	if err != nil {
		return out, false
	}
	makers := map[int]bool{}
	for _, uid := range inodes {
		makers[uid] = true
	}
	var first, rest []int
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if backends[pid] {
			rest = append(rest, pid)
			continue
		}
		var st unix.Stat_t
		if !makers[-1] && unix.Stat("/proc/"+d.Name(), &st) == nil && !makers[int(st.Uid)] {
			rest = append(rest, pid)
			continue
		}
		first = append(first, pid)
	}
	complete := scanFDs(first, inodes, out)
	left := map[uint64]int{}
	for ino, uid := range inodes {
		if len(out[ino]) == 0 {
			left[ino] = uid
		}
	}
	if len(left) > 0 && !scanFDs(rest, left, out) {
		complete = false
	}
	return out, complete
}

// scanFDs adds to out the processes of pids whose descriptors are sockets
// of inodes, and reports whether every one's descriptors could be read.
// Each descriptor's link is read relative to its process's fd directory
// into one buffer: a thousand processes' descriptors, with no path built
// and no string made per descriptor.
func scanFDs(pids []int, inodes map[uint64]int, out map[uint64][]Proc) bool {
	complete := true
	link := make([]byte, 256)
	for _, pid := range pids {
		path := "/proc/" + strconv.Itoa(pid) + "/fd"
		dir, err := os.Open(path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				complete = false
			}
			continue
		}
		fds, err := dir.Readdirnames(-1)
		if err != nil {
			dir.Close()
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
				complete = false
			}
			continue
		}
		var held []uint64
		for _, fd := range fds {
			n, err := unix.Readlinkat(int(dir.Fd()), fd, link)
			if err != nil {
				continue
			}
			ino, ok := socketInode(link[:n])
			if !ok {
				continue
			}
			if _, ok := inodes[ino]; ok && !contains(held, ino) {
				held = append(held, ino)
			}
		}
		dir.Close()
		if len(held) == 0 {
			continue
		}
		start, err := startTime(pid)
		if err != nil {
			continue // it exited
		}
		for _, ino := range held {
			out[ino] = append(out[ino], Proc{PID: pid, Start: start})
		}
	}
	return complete
}

// socketInode reads a descriptor's link "socket:[123]".
func socketInode(l []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(l, []byte("socket:["))
	if !ok || len(rest) < 2 || rest[len(rest)-1] != ']' {
		return 0, false
	}
	var ino uint64
	for _, c := range rest[:len(rest)-1] {
		d := uint64(c - '0')
		if c < '0' || c > '9' || ino > (math.MaxUint64-d)/10 {
			return 0, false
		}
		ino = ino*10 + d
	}
	return ino, true
}

func contains(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// startTime reads field 22 of /proc/PID/stat (after the command's closing
// parenthesis, which may itself hold parentheses and spaces).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("clientproc: /proc/%d/stat: no command field", pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 20 {
		return 0, fmt.Errorf("clientproc: /proc/%d/stat: %d fields after the command", pid, len(fs))
	}
	return strconv.ParseUint(fs[19], 10, 64)
}
