package clientproc

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sock_diag for AF_UNIX (linux/unix_diag.h).
const (
	udiagShowName = 0x1
	udiagShowPeer = 0x4
	unixDiagName  = 0
	unixDiagPeer  = 2
	diagReqLen    = 24 // struct unix_diag_req
	diagMsgLen    = 16 // struct unix_diag_msg
	maxDump       = 64 << 20
)

// unixPeer returns the inode of the client end of a unix-socket session:
// the peer of the backend's socket that was accepted on the server's
// socket (named .s.PGSQL.PORT), or 0 and why not.
func unixPeer(backend, serverPort int) (uint64, string) {
	own, err := socketInodes(backend)
	if err != nil {
		return 0, fmt.Sprintf("the server process %d's descriptors cannot be read (%v): its unix-socket client is not looked for", backend, err)
	}
	if len(own) == 0 {
		return 0, fmt.Sprintf("process %d holds no socket: is the server on this machine, in this pid namespace?", backend)
	}
	socks, err := dumpUnix()
	if err != nil {
		return 0, fmt.Sprintf("the kernel's list of unix sockets cannot be read (sock_diag: %v)", err)
	}
	suffix := "/.s.PGSQL." + strconv.Itoa(serverPort)
	for _, s := range socks {
		if own[s.inode] && strings.HasSuffix(s.name, suffix) {
			if s.peer == 0 {
				return 0, "the session's unix socket has no peer: its client closed it"
			}
			return s.peer, ""
		}
	}
	return 0, fmt.Sprintf("process %d holds no socket accepted on %s: is it this server's backend?", backend, suffix[1:])
}

// socketInodes lists the socket inodes in /proc/PID/fd.
func socketInodes(pid int) (map[uint64]bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/" + fd.Name())
		if err != nil {
			continue
		}
		if rest, ok := strings.CutPrefix(link, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); err == nil {
				out[ino] = true
			}
		}
	}
	return out, nil
}

type unixSock struct {
	inode, peer uint64
	name        string
}

// dumpUnix asks the kernel for every unix socket of this network
// namespace with its name and its peer's inode.
func dumpUnix() ([]unixSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	req := make([]byte, unix.NLMSG_HDRLEN+diagReqLen)
	le := binary.LittleEndian // host byte order on the machines lockwatch runs on
	le.PutUint32(req[0:], uint32(len(req)))
	le.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	le.PutUint32(req[8:], 1) // seq
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_UNIX
	le.PutUint32(r[4:], 0xffffffff) // every state
	le.PutUint32(r[12:], udiagShowName|udiagShowPeer)
	le.PutUint32(r[16:], 0xffffffff) // no cookie
	le.PutUint32(r[20:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []unixSock
	buf := make([]byte, 1<<16)
	total := 0
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		if total += n; total > maxDump {
			return nil, fmt.Errorf("more than %d bytes of sockets", maxDump)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(le.Uint32(m.Data)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				return out, nil
			}
			if len(m.Data) < diagMsgLen {
				continue
			}
			s := unixSock{inode: uint64(le.Uint32(m.Data[4:]))}
			attrs := m.Data[diagMsgLen:]
			for len(attrs) >= unix.SizeofRtAttr {
				l := int(le.Uint16(attrs[0:]))
				typ := le.Uint16(attrs[2:])
				if l < unix.SizeofRtAttr || l > len(attrs) {
					break
				}
				val := attrs[unix.SizeofRtAttr:l]
				switch typ {
				case unixDiagName:
					s.name = strings.TrimRight(string(val), "\x00")
				case unixDiagPeer:
					if len(val) >= 4 {
						s.peer = uint64(le.Uint32(val))
					}
				}
				adv := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
				if adv > len(attrs) {
					break
				}
				attrs = attrs[adv:]
			}
			out = append(out, s)
		}
	}
}
