package arena

import (
	"errors"
	"fmt"
)

var (
	// ErrNotRun means a directory or file is not a lockwatch run.
	ErrNotRun = errors.New("not a lockwatch run")
	// ErrCorrupt means an arena file is damaged or truncated.
	ErrCorrupt = errors.New("corrupted arena")
	// ErrVersion means an arena of another format version.
	ErrVersion = errors.New("arena of another format version")
	// ErrOwner means a run directory or arena belongs to another user or is
	// open to other users.
	ErrOwner = errors.New("run directory not private to this user")
	// ErrSymlink means a run directory or arena path is a symbolic link.
	ErrSymlink = errors.New("symbolic link refused")
)

// ArenaError describes why a run directory or arena cannot be used. Kind is
// one of ErrNotRun, ErrCorrupt, ErrVersion, ErrOwner, ErrSymlink, so callers
// match with errors.Is; the message says what to do.
type ArenaError struct {
	Path   string
	Kind   error
	Detail string // what exactly was wrong, quoting the offending value
	Hint   string // what to do about it
	// Version is the arena's format version when Kind is ErrVersion.
	Version uint32
}

func (e *ArenaError) Error() string {
	msg := fmt.Sprintf("lockreg: %s: %v: %s", e.Path, e.Kind, e.Detail)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *ArenaError) Unwrap() error { return e.Kind }
