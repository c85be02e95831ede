package jsonbudget

import (
	"encoding/json"
	"testing"
)

func TestValues(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{`{}`, 1},
		{`[{},{},{}]`, 6},
		{`{"a":"{,[\"]","b":[1,2]}`, 4},
		{`"\\"`, 0},
		{``, 0},
	} {
		if got := Values([]byte(tt.in)); got != tt.want {
			t.Errorf("Values(%s) = %d; want %d", tt.in, got, tt.want)
		}
	}
}

// FuzzValues: Values never exceeds the input's length, and is at least
// the number of objects and arrays a decoder builds of valid JSON.
func FuzzValues(f *testing.F) {
	f.Add([]byte(`{"a":[{},{"b":"}"}]}`))
	f.Add([]byte(`[[[[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := Values(b)
		if n < 0 || n > len(b) {
			t.Fatalf("%d values in %d bytes", n, len(b))
		}
		var v any
		if json.Unmarshal(b, &v) == nil && containers(v) > n {
			t.Fatalf("%s: %d containers decoded, %d counted", b, containers(v), n)
		}
	})
}

func containers(v any) int {
	switch v := v.(type) {
	case map[string]any:
		n := 1
		for _, e := range v {
			n += containers(e)
		}
		return n
	case []any:
		n := 1
		for _, e := range v {
			n += containers(e)
		}
		return n
	}
	return 0
}
