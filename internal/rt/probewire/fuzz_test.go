package probewire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// FuzzDecodeRequest: any bytes give a request or an error, never a panic or
// a read beyond the limit; a request that decodes encodes back to itself.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		frame(`{"v":1,"op":"info"}`),
		frame(`{"v":1,"op":"goroutines","text":true}`),
		frame(`{"v":1,"op":"locks","extra":[1,{"a":null}]}`),
		"\x00\x00\x10\x01",
		"GET / HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		q, err := DecodeRequest(r)
		if read := len(b) - r.Len(); read > 4+MaxRequest {
			t.Fatalf("read %d bytes; the limit is %d", read, 4+MaxRequest)
		}
		if err != nil {
			return
		}
		j, err := json.Marshal(q)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRequest(bytes.NewReader([]byte(frame(string(j)))))
		if err != nil || again != q {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, q)
		}
	})
}

// frame returns b with its length prefix.
func frame(b string) string {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	return string(n[:]) + b
}
