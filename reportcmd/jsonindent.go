package reportcmd

// indentJSON appends src, a value as json.Marshal prints it (compact: no
// space outside strings), to dst indented as json.Indent(dst, src, "",
// indent) would: the same bytes, in one pass that copies strings whole
// instead of stepping json's validating scanner over every byte (a report
// of 10,000 locks is megabytes of JSON, already valid).
func indentJSON(dst, src []byte, indent string) []byte {
	depth := 0
	needIndent := false // after '{' or '[': an empty one stays "{}" or "[]"
	newline := func() {
		dst = append(dst, '\n')
		for range depth {
			dst = append(dst, indent...)
		}
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
			// The string whole, to its closing quote (past escapes).
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				j = len(src) - 1
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
