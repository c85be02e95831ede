package pgsrc

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// The session and advisory arrays of the answer are decoded here by hand,
// in the common case only: a thousand sessions through json.Unmarshal each
// cost a check of bytes the answer's decoder has checked already, and
// reflection on 17 fields. Anything the fast path does not take as it is
// (an escape in a string, a number that is not a plain integer, a field
// count other than expected, a bad time) is decoded by json.Unmarshal
// instead, so the result, and each error, is json.Unmarshal's
// (FuzzSessionDecode compares them).

// elements splits a JSON array into its elements' bytes, into out; ok is
// false when b is not an array of n elements made of strings without
// escapes or control characters, nulls, plain integers, and arrays of
// plain integers (what the fast paths take).
func elements(b []byte, out [][]byte) (ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = skipSpace(b, i+1)
	n := 0
	for i < len(b) && b[i] != ']' {
		if n == len(out) {
			return false
		}
		end := value(b, i)
		if end < 0 {
			return false
		}
		out[n] = b[i:end]
		n++
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == ']' {
				return false // a trailing comma
			}
		} else if i >= len(b) || b[i] != ']' {
			return false
		}
	}
	return n == len(out) && i < len(b) && skipSpace(b, i+1) == len(b)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// value returns the end of the element at b[i:], or -1 if it is not one
// the fast paths take.
func value(b []byte, i int) int {
	switch c := b[i]; {
	case c == '"':
		for j := i + 1; j < len(b); j++ {
			switch {
			case b[j] == '"':
				if !utf8.Valid(b[i+1 : j]) {
					return -1
				}
				return j + 1
			case b[j] == '\\' || b[j] < 0x20:
				return -1
			}
		}
		return -1
	case c == 'n':
		if len(b)-i >= 4 && string(b[i:i+4]) == "null" {
			return i + 4
		}
		return -1
	case c == '-' || c >= '0' && c <= '9':
		j := i
		for j < len(b) && (b[j] == '-' || b[j] >= '0' && b[j] <= '9') {
			j++
		}
		return j
	case c == '[':
		for j := i + 1; j < len(b); j++ {
			switch c := b[j]; {
			case c == ']':
				return j + 1
			case c == '-' || c == ',' || c >= '0' && c <= '9' || c == ' ' || c == '\t' || c == '\n' || c == '\r':
			default:
				return -1
			}
		}
		return -1
	}
	return -1
}

func isNull(e []byte) bool { return string(e) == "null" }

// integer parses a plain JSON integer (no leading zero, no sign but a
// leading minus), as json.Unmarshal takes it into an int64.
func integer(e []byte) (int64, bool) {
	d := e
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || (d[0] == '0' && len(d) > 1) {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(string(e), 10, 64)
	return v, err == nil
}

// intOf is integer into an int (whose size is the machine's).
func intOf(e []byte) (int, bool) {
	v, ok := integer(e)
	if !ok || int64(int(v)) != v {
		return 0, false
	}
	return int(v), true
}

// text is a string element without escapes (value checked it), as a
// string.
func text(e []byte) (string, bool) {
	if len(e) < 2 || e[0] != '"' {
		return "", false
	}
	return string(e[1 : len(e)-1]), true
}

func optText(e []byte, p **string) bool {
	if isNull(e) {
		*p = nil
		return true
	}
	s, ok := text(e)
	if ok {
		*p = &s
	}
	return ok
}

func optInt(e []byte, p **int) bool {
	if isNull(e) {
		*p = nil
		return true
	}
	v, ok := intOf(e)
	if ok {
		*p = &v
	}
	return ok
}

// optTime is what json.Unmarshal does with a time field: null is nil, a
// string is time.Time's UnmarshalJSON of it.
func optTime(e []byte, p **time.Time) bool {
	if isNull(e) {
		*p = nil
		return true
	}
	if e[0] != '"' {
		return false
	}
	t := new(time.Time)
	if t.UnmarshalJSON(e) != nil {
		return false
	}
	*p = t
	return true
}

// ints is an array of plain integers, or null.
func ints(e []byte, p *[]int) bool {
	if isNull(e) {
		*p = nil
		return true
	}
	if e[0] != '[' {
		return false
	}
	out := []int{}
	i := skipSpace(e, 1)
	for i < len(e) && e[i] != ']' {
		j := i
		for j < len(e) && (e[j] == '-' || e[j] >= '0' && e[j] <= '9') {
			j++
		}
		v, ok := intOf(e[i:j])
		if !ok {
			return false
		}
		out = append(out, v)
		i = skipSpace(e, j)
		if i < len(e) && e[i] == ',' {
			i = skipSpace(e, i+1)
			if i < len(e) && e[i] == ']' {
				return false
			}
		} else if i >= len(e) || e[i] != ']' {
			return false
		}
	}
	*p = out
	return true
}

// decode is the fast path of session.UnmarshalJSON.
func (s *session) decode(b []byte) bool {
	var f [17][]byte
	if !elements(b, f[:]) {
		return false
	}
	pid, ok := intOf(f[0])
	if !ok {
		return false
	}
	s.PID = pid
	return optInt(f[1], &s.Leader) && optText(f[2], &s.DB) && optText(f[3], &s.User) && optText(f[4], &s.App) &&
		optText(f[5], &s.Addr) && optInt(f[6], &s.Port) && optTime(f[7], &s.Start) && optTime(f[8], &s.Xact) &&
		optTime(f[9], &s.QueryStart) && optTime(f[10], &s.Change) && optText(f[11], &s.State) &&
		optText(f[12], &s.WaitType) && optText(f[13], &s.Wait) && optText(f[14], &s.Type) && optText(f[15], &s.Query) &&
		ints(f[16], &s.Blockers)
}

// decode is the fast path of advisoryGroup.UnmarshalJSON.
func (g *advisoryGroup) decode(b []byte) bool {
	var f [6][]byte
	if !elements(b, f[:]) {
		return false
	}
	for i, p := range [...]*int64{&g.PID, &g.DB, &g.ClassID, &g.ObjSubID, &g.Shared} {
		v, ok := integer(f[i])
		if !ok {
			return false
		}
		*p = v
	}
	s, ok := text(f[5])
	g.ObjIDs = s
	return ok
}
