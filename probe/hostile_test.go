package probe

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
)

// frame returns b with its length prefix.
func frame(b string) string {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	return string(n[:]) + b
}

// rawRequest sends raw bytes on a new connection, then waits for the answer
// frame or the end of the connection, and says how long that took. It
// returns once the probe hung up, which it does after freeing the
// connection's slot: the next request finds every slot of earlier ones
// free.
func rawRequest(t *testing.T, path, raw string) (ans *answer, took time.Duration) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	_ = c.SetDeadline(begin.Add(probablyStillBlocked))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, err := probewire.ReadFrame(c, probewire.MaxHeader)
	took = time.Since(begin)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("no answer and no hang-up within %v", probablyStillBlocked)
		}
		return nil, took // dropped
	}
	waitHangUp(t, c)
	ans = new(answer)
	if err := json.Unmarshal(b, ans); err != nil {
		t.Fatalf("unreadable answer %q: %v", b, err)
	}
	return ans, took
}

// waitHangUp reads c until the probe closes it (a reset is a hang-up too:
// the probe closes without reading what it does not need).
func waitHangUp(t *testing.T, c net.Conn) {
	t.Helper()
	if err := hangUp(c); err != nil {
		t.Fatalf("waiting for the probe to hang up: %v", err)
	}
}

func hangUp(c net.Conn) error {
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	return nil
}

// info asks for the probe's info as Client.Info does, and returns once the
// probe hung up, which it does after freeing the connection's slot.
func info(path string) error {
	c, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probablyStillBlocked))
	if _, err := io.WriteString(c, frame(`{"v":1,"op":"info"}`)); err != nil {
		return err
	}
	b, err := probewire.ReadFrame(c, probewire.MaxHeader)
	if err != nil {
		return err
	}
	var ans answer
	if err := json.Unmarshal(b, &ans); err != nil {
		return err
	}
	if err := hangUp(c); err != nil {
		return err
	}
	if !ans.OK {
		return &probeclient.AnswerError{Message: ans.Error}
	}
	return nil
}

// TestHostile sends a real child's probe malformed, oversized and stalled
// requests: each gets an error answer or is dropped within the deadline, and
// the probe serves well-formed requests afterwards.
func TestHostile(t *testing.T) {
	dir := runDir(t)
	c := startChild(t, "serve", EnvDir+"="+dir)
	c.expect(c.stdout, "ready")
	st, err := proc.ReadStat(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	path := probewire.SocketPath(dir, st.Identity())
	cl := &probeclient.Client{Path: path}
	ctx := context.Background()

	tests := []struct {
		name    string
		raw     string
		wantErr string // in the error answer; "" if the connection may just be dropped
	}{
		{"garbage", "GET / HTTP/1.1\r\nHost: probe\r\n\r\n", "more than the 4096 allowed"},
		{"oversized length", "\x00\x10\x00\x00{", "more than the 4096 allowed"},
		{"largest length", "\xff\xff\xff\xff", "more than the 4096 allowed"},
		{"empty frame", frame(""), "request"},
		{"not JSON", frame("\x00\x01{{{"), "request"},
		{"JSON of another shape", frame(`[1,2,3]`), "request"},
		{"wrong version", frame(`{"v":2,"op":"info"}`), "version 2"},
		{"no version", frame(`{"op":"info"}`), "version 0"},
		{"unknown op", frame(`{"v":1,"op":"exit"}`), `unknown op "exit"`},
		{"huge op", frame(`{"v":1,"op":"` + strings.Repeat("x", 4000) + `"}`), "unknown op"},
		{"slow client, partial length", "\x00\x00", "no complete request"},
		{"slow client, partial body", "\x00\x00\x00\x20{\"v\":1,", "no complete request"},
		{"silent client", "", "no complete request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans, took := rawRequest(t, path, tt.raw)
			if limit := probewire.RequestTimeout + time.Second; took > limit {
				t.Errorf("answered after %v; want within %v", took, limit)
			}
			switch {
			case ans == nil && tt.wantErr != "":
				t.Errorf("dropped; want an error answer with %q", tt.wantErr)
			case ans != nil && (ans.OK || !strings.Contains(ans.Error, tt.wantErr)):
				t.Errorf("answer ok=%v error %q; want an error with %q", ans.OK, ans.Error, tt.wantErr)
			}
			if err := info(path); err != nil {
				t.Fatalf("Info after the request: %v", err)
			}
		})
	}

	t.Run("too many connections", func(t *testing.T) {
		var idle []net.Conn
		defer func() {
			for _, c := range idle {
				_ = c.Close()
			}
		}()
		for range probewire.MaxConns {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, c)
		}
		var ae *probeclient.AnswerError
		if _, err := cl.Info(ctx); !errors.As(err, &ae) || !strings.Contains(ae.Message, "busy") {
			t.Errorf("Info with %d connections open: %v; want a busy answer", probewire.MaxConns, err)
		}
		// The idle connections are dropped at their deadline.
		deadline := time.Now().Add(probablyStillBlocked)
		for err := info(path); err != nil; err = info(path) {
			if time.Now().After(deadline) {
				t.Fatalf("Info after idle connections: %v", err)
			}
			time.Sleep(quiescent)
		}
	})
}

// TestPeerUID: a probe answers its own user only.
func TestPeerUID(t *testing.T) {
	a, err := start(Options{Dir: runDir(t)}, os.Getuid()+1)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = (&probeclient.Client{Path: a.SocketPath()}).Info(context.Background())
	var ae *probeclient.AnswerError
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "permission denied") {
		t.Fatalf("Info from another uid: %v; want permission denied", err)
	}
}

// TestClientErrors: the client tells "nobody listens" from "no answer".
func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	_, err := (&probeclient.Client{Path: filepath.Join(dir, "none.sock")}).Info(ctx)
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, probeclient.ErrNoAnswer) {
		t.Errorf("Info of a missing socket: %v; want a not-exist error, not ErrNoAnswer", err)
	}

	// A listener that accepts and never answers, and one that hangs up.
	for _, tt := range []struct {
		name   string
		hangUp bool
	}{{"mute", false}, {"hang-up", true}} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if !tt.hangUp {
					_, _ = io.Copy(io.Discard, c) // until the client gives up
				}
				_ = c.Close()
			}()
			defer func() { _ = ln.Close(); <-done }()
			begin := time.Now()
			_, err = (&probeclient.Client{Path: path, Timeout: 100 * time.Millisecond}).Goroutines(ctx, false)
			if !errors.Is(err, probeclient.ErrNoAnswer) {
				t.Errorf("Goroutines: %v; want ErrNoAnswer", err)
			}
			if took := time.Since(begin); took > probablyStillBlocked {
				t.Errorf("gave up after %v", took)
			}
		})
	}
}
