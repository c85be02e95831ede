package lockreg

import (
	"os"
	"path/filepath"
	"testing"
)

// $LOCKWATCH_ROOT replaces the default root, with the same checks: made
// private if missing, refused if a symbolic link.
func TestDefaultRootFromEnv(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	t.Setenv(EnvRoot, root)
	got, err := DefaultRoot()
	if err != nil || got != root {
		t.Fatalf("got %q, %v; want %q", got, err, root)
	}
	if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("root: %v, %v; want a directory of mode 0700", fi, err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvRoot, link)
	if _, err := DefaultRoot(); err == nil {
		t.Errorf("a symbolic link as the root was accepted")
	}
}
