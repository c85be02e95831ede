package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The stand-in for lockwatch-etcd is this test binary, linked under that
// name beside a copy of lockwatch (or on PATH): with standinEnv set, it
// records its arguments in that file, writes a line on stdout and one on
// stderr, and exits with $standinExitEnv, or, with "hang", waits for a
// signal to end it. It does so in init, before TestMain.
const (
	standinEnv     = "LOCKWATCH_CLI_TEST_ETCD_ARGS"
	standinExitEnv = "LOCKWATCH_CLI_TEST_ETCD_EXIT"
)

func init() {
	out := os.Getenv(standinEnv)
	if out == "" || filepath.Base(os.Args[0]) != etcdTool {
		return
	}
	b, _ := json.Marshal(os.Args[1:])
	if err := os.WriteFile(out, b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(99)
	}
	fmt.Println("stand-in stdout")
	fmt.Fprintln(os.Stderr, "stand-in stderr")
	code := os.Getenv(standinExitEnv)
	if code == "hang" {
		select {} // until a signal ends it
	}
	n, _ := strconv.Atoi(code)
	os.Exit(n)
}

// link puts a hard link to file (a copy if that fails) at dir/name.
func link(t *testing.T, file, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Link(file, p); err == nil {
		return p
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// etcdSetup makes a directory with lockwatch in it, and the stand-in
// lockwatch-etcd beside it (beside) or in a directory of its own on PATH.
// It returns lockwatch's path and the environment to run it with.
func etcdSetup(t *testing.T, standin string) (string, []string, string) {
	t.Helper()
	built, _ := bins(t)
	dir, path := t.TempDir(), t.TempDir() // path: on PATH, empty unless "path"
	lw := link(t, built, dir, "lockwatch")
	switch standin {
	case "beside":
		link(t, os.Args[0], dir, etcdTool)
	case "path":
		link(t, os.Args[0], path, etcdTool)
	}
	argsFile := filepath.Join(t.TempDir(), "args.json")
	var env []string
	for _, kv := range cleanEnv() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+path, standinEnv+"="+argsFile)
	return lw, env, argsFile
}

// TestEtcdDispatch: attach, watch and run of an etcd run (and attach of
// foreign lock prefixes, ps and prune of the runs kept in etcd) are handed to
// lockwatch-etcd, found beside lockwatch or on PATH, with lockwatch's
// flags turned into its flags; its output and exit status are lockwatch's.
// A flag lockwatch-etcd does not take is refused; without lockwatch-etcd,
// one line says how to build or install it.
func TestEtcdDispatch(t *testing.T) {
	tests := []struct {
		name     string
		standin  string // beside, path, or "" (none)
		args     []string
		exit     string // the stand-in's exit status
		wantArgs []string
		wantCode int
		wantErr  string // in lockwatch's stderr
	}{
		{name: "attach a URL", standin: "beside", args: []string{"attach", "etcd://10.0.0.5:2379/run-1"}, exit: "3",
			wantArgs: []string{"attach", "-o", "table", "--stuck-after", "10s", "etcd://10.0.0.5:2379/run-1"}, wantCode: 3},
		{name: "attach RUN with --etcd, on PATH", standin: "path", args: []string{"-o", "json", "attach", "--etcd", "http://h:1", "run-1"}, exit: "0",
			wantArgs: []string{"attach", "-o", "json", "--stuck-after", "10s", "--etcd", "http://h:1", "run-1"}},
		{name: "watch", standin: "beside", args: []string{"watch", "--interval", "2s", "--stuck-after", "1m", "etcd://h:1,h:2/run-1"}, exit: "0",
			wantArgs: []string{"watch", "-o", "table", "--stuck-after", "1m0s", "--interval", "2s", "etcd://h:1,h:2/run-1"}},
		{name: "attach every process's live stacks", standin: "beside", args: []string{"--live-stacks=0", "attach", "etcd://h:1/run-1"}, exit: "0",
			wantArgs: []string{"attach", "-o", "table", "--stuck-after", "10s", "--live-stacks", "0", "etcd://h:1/run-1"}},
		{name: "run on an embedded etcd", standin: "beside", args: []string{"run", "--backend", "etcd", "--on-deadlock=kill", "--", "prog", "-x", "y"}, exit: "124",
			wantArgs: []string{"run", "-o", "table", "--stuck-after", "10s", "--on-deadlock", "kill", "--", "prog", "-x", "y"}, wantCode: 124},
		{name: "run on a cluster", standin: "path", args: []string{"run", "--etcd", "http://h:1", "--report", "r.txt", "prog"}, exit: "7",
			wantArgs: []string{"run", "-o", "table", "--stuck-after", "10s", "--report", "r.txt", "--etcd", "http://h:1", "--", "prog"}, wantCode: 7},
		{name: "attach with auth and TLS", standin: "beside", args: []string{"attach", "--user", "root", "--password-file", "pw", "--cacert", "ca.pem", "etcd://h:1/run-1"}, exit: "2",
			wantArgs: []string{"attach", "-o", "table", "--stuck-after", "10s", "--cacert", "ca.pem", "--password-file", "pw", "--user", "root", "etcd://h:1/run-1"}, wantCode: 2},
		{name: "run with a client certificate", standin: "beside", args: []string{"run", "--etcd", "https://h:1", "--cert", "c.pem", "--key", "k.pem", "--", "prog"}, exit: "0",
			wantArgs: []string{"run", "-o", "table", "--stuck-after", "10s", "--cert", "c.pem", "--key", "k.pem", "--etcd", "https://h:1", "--", "prog"}},
		{name: "attach foreign lock prefixes", standin: "beside", args: []string{"attach", "etcd://h:1/?lock=app%2FA&lock=app%2FB"}, exit: "3",
			wantArgs: []string{"attach", "-o", "table", "--stuck-after", "10s", "etcd://h:1/?lock=app%2FA&lock=app%2FB"}, wantCode: 3},
		{name: "ps of etcd", standin: "beside", args: []string{"ps", "--cacert", "ca.pem", "etcd://h:1,h:2"}, exit: "0",
			wantArgs: []string{"ps", "-o", "table", "--stuck-after", "10s", "--cacert", "ca.pem", "etcd://h:1,h:2"}},
		{name: "prune of etcd runs", standin: "beside", args: []string{"prune", "etcd://h:1", "run-1", "run-2"}, exit: "2",
			wantArgs: []string{"prune", "-o", "table", "--stuck-after", "10s", "etcd://h:1", "run-1", "run-2"}, wantCode: 2},
		{name: "a prune flag etcd runs do not take", standin: "beside", args: []string{"prune", "--dry-run", "etcd://h:1"},
			wantCode: ExitUsage, wantErr: "prune: --dry-run does not apply to etcd runs"},
		{name: "ps of shared memory takes no argument", standin: "beside", args: []string{"ps", "run-1"},
			wantCode: ExitUsage, wantErr: "takes no arguments"},
		{name: "an etcd flag on a shared-memory run", standin: "beside", args: []string{"attach", "--user", "root", "no-such-run"},
			wantCode: ExitUsage, wantErr: "attach: --user is for etcd runs"},
		{name: "a flag lockwatch-etcd does not take", standin: "beside", args: []string{"run", "--keep", "--etcd", "http://h:1", "--", "prog"},
			wantCode: ExitRunFailed, wantErr: "--keep does not apply to etcd runs"},
		{name: "--etcd with --backend lockreg", standin: "beside", args: []string{"run", "--backend", "lockreg", "--etcd", "http://h:1", "--", "prog"},
			wantCode: ExitRunFailed, wantErr: "drop one of them"},
		{name: "attach without lockwatch-etcd", args: []string{"attach", "etcd://h:1/run-1"},
			wantCode: ExitUsage, wantErr: "build it with 'make build-etcd'"},
		{name: "run without lockwatch-etcd", args: []string{"run", "--backend", "etcd", "--", "prog"},
			wantCode: ExitRunFailed, wantErr: "found neither in"},
		{name: "a shared-memory run is not handed over", standin: "beside", args: []string{"attach", "no-such-run"},
			wantCode: ExitUsage, wantErr: "no-such-run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lw, env, argsFile := etcdSetup(t, tt.standin)
			cmd := exec.Command(lw, tt.args...)
			cmd.Env = append(env, standinExitEnv+"="+tt.exit)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var xe *exec.ExitError
			if errors.As(err, &xe) {
				code = xe.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit status %d; want %d\nstderr: %s", code, tt.wantCode, stderr.String())
			}
			b, err := os.ReadFile(argsFile)
			if tt.wantArgs == nil {
				if err == nil {
					t.Errorf("lockwatch-etcd ran with %s; want it not run", b)
				}
				if !strings.Contains(stderr.String(), tt.wantErr) || strings.Count(stderr.String(), "\n") != 1 {
					t.Errorf("stderr %q; want one line saying %q", stderr.String(), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("lockwatch-etcd did not run: %v\nstderr: %s", err, stderr.String())
			}
			var got []string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.wantArgs) {
				t.Errorf("lockwatch-etcd ran with %q; want %q", got, tt.wantArgs)
			}
			if stdout.String() != "stand-in stdout\n" || stderr.String() != "stand-in stderr\n" {
				t.Errorf("stdout %q, stderr %q; want the stand-in's own lines only", stdout.String(), stderr.String())
			}
		})
	}
}

// TestEtcdDispatchSignal: a signal that reaches lockwatch reaches
// lockwatch-etcd, and its death by the signal is lockwatch's exit status
// (128+N).
func TestEtcdDispatchSignal(t *testing.T) {
	lw, env, _ := etcdSetup(t, "beside")
	cmd := exec.Command(lw, "run", "--backend", "etcd", "--", "prog")
	cmd.Env = append(env, standinExitEnv+"=hang")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "stand-in stdout\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("read %q, %v; want the stand-in's line", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("lockwatch ended with %v; want exit status %d (lockwatch-etcd ended by SIGTERM)", err, 128+int(syscall.SIGTERM))
	}
}

// TestLeanCore: nothing in the main module (lockwatch, the probe, lockreg,
// the demo, their tests) links etcd or a PostgreSQL driver; the etcd and
// PostgreSQL backends are modules of their own that only what uses them
// imports.
func TestLeanCore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	cmd := exec.Command("go", "list", "-deps", "-test", "github.com/lockwatch/lockwatch/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := strings.Fields(string(out))
	if !slices.Contains(pkgs, "github.com/lockwatch/lockwatch/cmd/lockwatch") || !slices.Contains(pkgs, "github.com/spf13/cobra") {
		t.Fatalf("go list named %d packages, without cmd/lockwatch or cobra: not the main module's dependencies", len(pkgs))
	}
	for _, p := range pkgs {
		if strings.HasPrefix(p, "go.etcd.io/") || strings.HasPrefix(p, "github.com/lockwatch/lockwatch/etcd") ||
			strings.HasPrefix(p, "github.com/jackc/") || strings.HasPrefix(p, "github.com/lockwatch/lockwatch/postgres") {
			t.Errorf("the main module depends on %s", p)
		}
	}
	root := strings.TrimSpace(goEnv(t, "GOMOD"))
	mod, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mod), "etcd") {
		t.Errorf("%s requires etcd", root)
	}
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
