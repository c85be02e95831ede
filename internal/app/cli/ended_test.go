package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/lockreg"
)

// A run that ended cleanly with -o json writes one document; when it
// cannot be written, run says so and exits 2 instead of succeeding with
// nothing written.
func TestEndedReportUnwritable(t *testing.T) {
	dir := runDir(t)
	reg, err := lockreg.Open(dir, lockreg.Options{Role: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		wantCode int
	}{
		{"writable", filepath.Join(t.TempDir(), "report.json"), ExitOK},
		{"directory missing", filepath.Join(t.TempDir(), "missing", "report.json"), ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			a := &app{stdout: &stdout, stderr: &stderr, output: "json"}
			err := a.ended(t.Context(), dir, nil, nil, runSeen{}, runFlags{keep: true, reportPath: tt.path})
			code := ExitOK
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatalf("got error %v; want an exit status", err)
			}
			if code != tt.wantCode {
				t.Fatalf("got exit %d (%v); want %d", code, err, tt.wantCode)
			}
			if code == ExitOK {
				b, err := os.ReadFile(tt.path)
				if err != nil {
					t.Fatal(err)
				}
				readReport(t, b)
				return
			}
			if !strings.Contains(err.Error(), "cannot write the report") || !strings.Contains(err.Error(), "missing") {
				t.Errorf("got %q; want it to say the report could not be written, and where", err)
			}
		})
	}
}
