// Package jsonbudget counts what decoding a JSON text would build, before
// it is decoded: a reader of input it does not trust (a probe's answer, a
// stack dictionary's line) refuses a text whose values are too many, since
// encoding/json builds some 60 bytes of structure from the three bytes of
// "{},".
package jsonbudget

// Values counts the values of the JSON text b that cost a decoder memory:
// each object or array, and each element or member after the first (a
// comma). Brackets and commas inside strings do not count. It never
// exceeds len(b).
func Values(b []byte) int {
	n := 0
	in, esc := false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case in:
		case c == '{' || c == '[' || c == ',':
			n++
		}
	}
	return n
}
