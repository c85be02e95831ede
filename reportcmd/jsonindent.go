package reportcmd

import "bytes"

// indentJSON appends src, a value as json.Marshal prints it (compact: no
// space outside strings), to dst indented as json.Indent(dst, src, "",
// indent) would: the same bytes, in one pass that copies strings whole
// instead of stepping json's validating scanner over every byte (a report
// of 10,000 locks is megabytes of JSON, already valid). depth is the
// nesting src starts at (0 for a whole value; 1 for what follows a member
// of an object at the top, written by someone else).
func indentJSON(dst, src []byte, indent string, depth int) []byte {
	needIndent := false // after '{' or '[': an empty one stays "{}" or "[]"
	// pad is a newline and the indentation of the deepest level so far: a
	// line's start is copied from it whole.
	pad := []byte{'\n'}
	newline := func() {
		for len(pad) < 1+depth*len(indent) {
			pad = append(pad, indent...)
		}
		dst = append(dst, pad[:1+depth*len(indent)]...)
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		if needIndent && c != '}' && c != ']' {
			needIndent = false
			depth++
			newline()
		}
		switch c {
		case '"':
			// The string whole, to its closing quote: the first quote
			// after an even number of backslashes.
			j := i + 1
			for {
				k := bytes.IndexByte(src[j:], '"')
				if k < 0 {
					j = len(src) - 1
					break
				}
				j += k
				n := 0
				for j-1-n > i && src[j-1-n] == '\\' {
					n++
				}
				if n%2 == 0 {
					break
				}
				j++
			}
			dst = append(dst, src[i:j+1]...)
			i = j
		case '{', '[':
			needIndent = true
			dst = append(dst, c)
		case ',':
			dst = append(dst, c)
			newline()
		case ':':
			dst = append(dst, c, ' ')
		case '}', ']':
			if needIndent {
				needIndent = false
			} else {
				depth--
				newline()
			}
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
