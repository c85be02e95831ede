package arena

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/procid"
)

// A RunDir is an open run directory: an os.Root, opened once, without
// following a symbolic link, and checked (a directory, this user's, mode
// 0700). Every file of the run is then opened through it, so that a
// directory or symbolic link swapped into the path afterwards never
// redirects a read or a write; and a file of the run that is itself a
// symbolic link is refused, as O_NOFOLLOW would (os.Root would follow one
// that stays inside the directory).
//
// A RunDir is safe for concurrent use. Its zero value is not usable.
type RunDir struct {
	path string
	root *os.Root
}

// OpenRunDir opens the existing run directory path for reading its files.
// It refuses a symbolic link, anything but a directory, and a directory of
// another user or open to other users.
func OpenRunDir(path string) (*RunDir, error) { return OpenDir(path, false) }

// openRunDir opens path as a private directory, creating it first (mode
// 0700, its parent must exist) when create is set.
func OpenDir(path string, create bool) (*RunDir, error) { return openDir(path, create, !create) }

// openDir is OpenDir; arena says that a directory without an arena file is
// refused (ErrNotRun), as a reader wants it.
func openDir(path string, create, arena bool) (*RunDir, error) {
	if create {
		if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	symlink := &ArenaError{Path: path, Kind: ErrSymlink, Detail: "the run directory is a symbolic link",
		Hint: "give the real path of the run directory"}
	li, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &ArenaError{Path: path, Kind: ErrNotRun, Detail: "no such directory",
			Hint: "check the path, or start the program with 'lockwatch run'"}
	case err != nil:
		return nil, err
	case li.Mode()&fs.ModeSymlink != 0:
		return nil, symlink
	case !li.IsDir():
		return nil, &ArenaError{Path: path, Kind: ErrNotRun, Detail: "not a directory",
			Hint: "give a run directory (lockwatch ps lists them)"}
	}
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	d := &RunDir{path: path, root: root}
	// The root must be the directory looked at: not a symbolic link put
	// in its place between the two.
	fi, err := root.Stat(".")
	if err == nil && !os.SameFile(li, fi) {
		d.Close()
		return nil, symlink
	}
	if err == nil && arena {
		// Reading: a directory that holds no run is that, whatever its mode.
		if _, err := d.root.Lstat(ArenaFile); errors.Is(err, fs.ErrNotExist) {
			d.Close()
			return nil, &ArenaError{Path: path, Kind: ErrNotRun, Detail: "no arena file",
				Hint: "this directory holds no lockwatch run; lockwatch ps lists runs"}
		}
	}
	if err == nil {
		err = checkPrivate(path, fi, 0o700)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Path returns the path the directory was opened by (it names the
// directory only as long as nobody renames it).
func (d *RunDir) Path() string { return d.path }

// Close closes the handle.
func (d *RunDir) Close() error { return d.root.Close() }

func (d *RunDir) join(name string) string { return filepath.Join(d.path, name) }

// checkName refuses a name that is not one path component.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("lockreg: %q is not a file name of the run directory", name)
	}
	return nil
}

// pathError gives an error of the root the run directory's path.
func (d *RunDir) pathError(err error, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: d.join(name), Err: pe.Err}
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return &os.LinkError{Op: le.Op, Old: d.join(filepath.Base(le.Old)), New: d.join(filepath.Base(le.New)), Err: le.Err}
	}
	return err
}

// OpenFile opens the file name of the run directory with flag and perm as
// os.OpenFile does, through the directory's root, and refuses a symbolic
// link (ELOOP, as O_NOFOLLOW). name is one path component.
func (d *RunDir) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := d.root.OpenFile(name, flag, perm)
	// os.Root follows a symbolic link that stays inside the directory, and
	// refuses one that leaves it: either way, a link is refused.
	if li, lerr := d.root.Lstat(name); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
		if f != nil {
			f.Close()
		}
		return nil, &fs.PathError{Op: "openat", Path: d.join(name), Err: unix.ELOOP}
	}
	if err != nil {
		return nil, d.pathError(err, name)
	}
	return f, nil
}

// CreateFile creates the new file name (it must not exist), mode 0600,
// for writing.
func (d *RunDir) CreateFile(name string) (*os.File, error) {
	return d.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// WriteFile writes b to the file name, creating it (mode 0600) or
// truncating it.
func (d *RunDir) WriteFile(name string, b []byte) error {
	f, err := d.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

// Rename renames the file oldname to newname, both in the run directory.
func (d *RunDir) Rename(oldname, newname string) error {
	if err := errors.Join(checkName(oldname), checkName(newname)); err != nil {
		return err
	}
	return d.pathError(d.root.Rename(oldname, newname), oldname)
}

// Remove removes the file name of the run directory.
func (d *RunDir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return d.pathError(d.root.Remove(name), name)
}

// link makes newname a hard link to oldname; it fails if newname exists.
func (d *RunDir) link(oldname, newname string) error {
	return d.pathError(d.root.Link(oldname, newname), oldname)
}

// openPrivate opens the file name for reading, without following a
// symbolic link and without blocking (a FIFO planted in the run directory
// must not hang a reader), and refuses anything but a regular file private
// to this user.
func (d *RunDir) openPrivate(name string) (*os.File, error) {
	f, err := d.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &ArenaError{Path: f.Name(), Kind: ErrCorrupt, Detail: "not a regular file", Hint: "the run directory has been tampered with"}
	}
	if err == nil {
		err = checkPrivate(f.Name(), fi, 0o600)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// rootName is the default root's name under its base directory; fallbacks
// are named rootName + "-" + random.
func RootName() string { return fmt.Sprintf("lockwatch-%d", os.Getuid()) }

// rootBases are the directories a root may live in, in order of
// preference: /dev/shm (memory, like a POSIX semaphore), $XDG_RUNTIME_DIR
// (private to the user by the standard), then $TMPDIR.
func rootBases() []string {
	var out []string
	add := func(d string) {
		if d == "" || !filepath.IsAbs(d) {
			return
		}
		d = filepath.Clean(d)
		for _, o := range out {
			if o == d {
				return
			}
		}
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	add("/dev/shm")
	add(os.Getenv("XDG_RUNTIME_DIR"))
	add(os.TempDir())
	return out
}

// EnvRoot names the environment variable that, when set, replaces the
// default root and its fallbacks: tests and scripts that want their runs
// elsewhere than in the shared /dev/shm set it. The directory it names is
// used as given (created with mode 0700 if missing), never replaced by a
// fallback: a named root that cannot be trusted is an error.
const EnvRoot = "LOCKWATCH_ROOT"

// A Root is the directory under which this user's run directories are made.
type Root struct {
	Dir string
	// Fallback is empty when Dir is the default root. Otherwise it says, in
	// one line, why the default could not be used (another user made it
	// first, it is not a directory, it is open to other users) and that
	// Dir, a private directory of this user, is used instead. Whoever
	// chose the root tells the user.
	Fallback string
}

// DefaultRoot returns the directory under which run directories are made
// when none is named: /dev/shm/lockwatch-UID where /dev/shm exists (memory,
// like a POSIX semaphore), otherwise $TMPDIR/lockwatch-UID, created with
// mode 0700 if missing.
//
// A default root that cannot be trusted (a symbolic link, not a directory,
// another user's, open to other users: anyone can create it first in the
// shared /dev/shm) is never a failure: the root is then a private fallback,
// lockwatch-UID-RANDOM in the same place (or $XDG_RUNTIME_DIR, or $TMPDIR),
// an existing one of this user's if there is one, else a fresh one, and
// Root.Fallback says why. Roots lists the fallbacks for readers.
//
// With $LOCKWATCH_ROOT set (EnvRoot), the root is that directory.
func DefaultRoot() (Root, error) {
	if root := os.Getenv(EnvRoot); root != "" {
		root, err := filepath.Abs(root)
		if err != nil {
			return Root{}, err
		}
		d, err := OpenDir(root, true)
		if err != nil {
			return Root{}, err
		}
		d.Close()
		return Root{Dir: root}, nil
	}
	return DefaultRootIn(rootBases())
}

func DefaultRootIn(bases []string) (Root, error) {
	if len(bases) == 0 {
		return Root{}, fmt.Errorf("lockreg: no directory for runs: neither /dev/shm, $XDG_RUNTIME_DIR nor %s is a directory; set %s", os.TempDir(), "TMPDIR")
	}
	def := filepath.Join(bases[0], RootName())
	d, err := OpenDir(def, true)
	if err == nil {
		d.Close()
		return Root{Dir: def}, nil
	}
	why := err.Error()
	var ae *ArenaError
	if errors.As(err, &ae) {
		why = fmt.Sprintf("%s: %s", def, ae.Detail)
	}
	for _, b := range bases {
		if fb := fallbacks(b); len(fb) > 0 {
			return Root{Dir: fb[0], Fallback: fmt.Sprintf("%s; using the private %s instead", why, fb[0])}, nil
		}
	}
	var errs []error
	for _, b := range bases {
		dir, err := os.MkdirTemp(b, RootName()+"-")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !IsPrivateDir(dir) { // MkdirTemp makes it 0700; a umask cannot widen that
			os.Remove(dir)
			errs = append(errs, fmt.Errorf("%s: not private after creation", dir))
			continue
		}
		return Root{Dir: dir, Fallback: fmt.Sprintf("%s; using the private %s instead", why, dir)}, nil
	}
	return Root{}, fmt.Errorf("lockreg: %s, and no private fallback could be made: %w", why, errors.Join(errs...))
}

// fallbacks returns the private fallback roots of this user in base,
// sorted by name.
func fallbacks(base string) []string {
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []string
	prefix := RootName() + "-"
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && IsPrivateDir(filepath.Join(base, e.Name())) {
			out = append(out, filepath.Join(base, e.Name()))
		}
	}
	return out
}

// isPrivateDir reports whether path is a directory (not a symbolic link)
// of this user, closed to other users.
func IsPrivateDir(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.IsDir() && checkPrivate(path, fi, 0o700) == nil
}

// Roots returns every directory where this user's runs may be: the default
// root and the private fallbacks DefaultRoot may have chosen
// (lockwatch-UID-* in /dev/shm, $XDG_RUNTIME_DIR or $TMPDIR), each only if
// it is a directory of this user closed to other users. A directory another
// user made under one of these names is never listed. With $LOCKWATCH_ROOT
// set, it is the only root.
func Roots() []string {
	if root := os.Getenv(EnvRoot); root != "" {
		if root, err := filepath.Abs(root); err == nil && IsPrivateDir(root) {
			return []string{root}
		}
		return nil
	}
	return RootsIn(rootBases())
}

func RootsIn(bases []string) []string {
	var out []string
	for _, b := range bases {
		if d := filepath.Join(b, RootName()); IsPrivateDir(d) {
			out = append(out, d)
		}
		out = append(out, fallbacks(b)...)
	}
	return out
}

// NewRunDir makes a fresh run directory under root, named
// run-YYYYMMDD-HHMMSS-PID-N after the calling process, mode 0700. It does
// not create the arena: the first process to Open the directory does.
func NewRunDir(root string) (string, error) {
	rd, err := OpenDir(root, true)
	if err != nil {
		return "", err
	}
	defer rd.Close()
	stamp := time.Now().Format("20060102-150405")
	for n := 0; ; n++ {
		name := fmt.Sprintf("run-%s-%d-%d", stamp, os.Getpid(), n)
		err := rd.root.Mkdir(name, 0o700)
		if err == nil {
			return filepath.Join(root, name), nil
		}
		if !errors.Is(err, fs.ErrExist) || n > 1000 {
			return "", rd.pathError(err, name)
		}
	}
}

// RunDirs lists the run directories under root, newest first.
func RunDirs(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := len(ents) - 1; i >= 0; i-- {
		e := ents[i]
		if e.IsDir() && strings.HasPrefix(e.Name(), "run-") {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	return out, nil
}

// AllRunDirs lists the run directories under every root of Roots, newest
// first (by name: run-YYYYMMDD-HHMMSS-PID-N).
func AllRunDirs() []string {
	var out []string
	for _, r := range Roots() {
		ds, _ := RunDirs(r)
		out = append(out, ds...)
	}
	sort.SliceStable(out, func(i, j int) bool { return filepath.Base(out[i]) > filepath.Base(out[j]) })
	return out
}

// ProcessFiles returns the paths of a process's files in a run directory:
// its info file (JSON), its stack dictionary, and the base name (without
// extension) that other per-process files, like the probe's socket, share.
func ProcessFiles(dir string, id procid.ID) (info, stacks, base string) {
	base = filepath.Join(dir, strings.TrimSuffix(ProcessFile(id, "x"), ".x"))
	return base + ".json", base + ".stacks", base
}

// RemoveIfClean removes the run directory dir if its run ended cleanly:
// every process in its table closed its registry (a clean exit) and no lock
// is held. A run with anything to diagnose (a process that died, a lock held)
// is kept. It reports whether it removed the directory.
func RemoveIfClean(dir string) (bool, error) {
	s, err := ReadSnapshotWith(dir, ReadOptions{Events: 1})
	if err != nil {
		return false, err
	}
	if s.Counts.Running > 0 || s.Counts.Held > 0 {
		return false, nil
	}
	return true, os.RemoveAll(dir)
}
