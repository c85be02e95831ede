package reportcmd

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"testing"
)

func TestRefuse(t *testing.T) {
	var out bytes.Buffer
	err := Refuse(&out, "tool", ExitUsage, errors.New("bad \x1b[2J name"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitUsage {
		t.Fatalf("Refuse returned %v; want an ExitError of code %d", err, ExitUsage)
	}
	if got := out.String(); bytes.ContainsRune(out.Bytes(), 0x1b) || got[:6] != "tool: " {
		t.Errorf("Refuse said %q; want one escaped line after the command's name", got)
	}
}

func TestParseFlags(t *testing.T) {
	fs := flag.NewFlagSet("tool", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	n := fs.Int("n", 0, "")
	if help, err := ParseFlags(fs, []string{"-n", "3"}, ExitUsage); help || err != nil || *n != 3 {
		t.Errorf("-n 3: help %v, err %v, n %d; want false, nil, 3", help, err, *n)
	}
	if help, err := ParseFlags(fs, []string{"-h"}, ExitUsage); !help || err != nil {
		t.Errorf("-h: help %v, err %v; want true, nil", help, err)
	}
	var ee *ExitError
	if help, err := ParseFlags(fs, []string{"-x"}, 7); help || !errors.As(err, &ee) || ee.Code != 7 {
		t.Errorf("-x: help %v, err %v; want false and an ExitError of code 7", help, err)
	}
}
