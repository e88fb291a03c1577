package receiver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

// TestWriteCompactJSON: the NDJSON body writer drops exactly the whitespace json.Compact drops.
func TestWriteCompactJSON(t *testing.T) {
	for _, in := range append([]string{
		"{ \"a\" :\n [1, 2,\t3 ],\r\n \"b\": \"x y\\\" \\\\ \\n z\" }\n",
		`"only a string"`, ` 1 `, `{"é": "ü  ü"}`, `{}`,
	}, fuzzSeeds[:3]...) {
		var want bytes.Buffer
		if err := json.Compact(&want, []byte(in)); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		var got bytes.Buffer
		w := bufio.NewWriter(&got)
		writeCompactJSON(w, []byte(in))
		w.Flush()
		if got.String() != want.String() {
			t.Errorf("%q:\n got %q\nwant %q", in, got.String(), want.String())
		}
	}
}
