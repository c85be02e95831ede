package reportcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Refuse says err on stderr in one line, after the command's name and
// escaped, and returns it as the ExitError of code: what a command does
// with input it cannot take.
func Refuse(stderr io.Writer, prog string, code int, err error) error {
	fmt.Fprintln(stderr, prog+":", Escape(err.Error()))
	return &ExitError{Code: code, Err: err}
}

// ParseFlags parses args into fs. help is true when the user asked for
// help (fs's Usage has printed it): the command then ends with no error.
// An error is the ExitError of code (the flag package has said it).
func ParseFlags(fs *flag.FlagSet, args []string, code int) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, &ExitError{Code: code, Err: err}
	}
	return false, nil
}
