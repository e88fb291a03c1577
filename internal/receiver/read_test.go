package receiver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
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

// TestListLinesAreValidUTF8: a body stored before ingest refused invalid UTF-8 is listed with the
// bad bytes replaced, so every NDJSON line parses in strict readers; the raw endpoint keeps them.
func TestListLinesAreValidUTF8(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, nil)
		legacy := store.Delivery{RunID: "legacy", Project: "p", APIName: "a", ResultStatus: "completed",
			ReceivedAt: time.Now(), Body: []byte("{\"x\": \"a\xffb\xc3\x28\"}")}
		if _, err := e.st.Save(context.Background(), []store.Delivery{legacy}); err != nil {
			t.Fatal(err)
		}
		r := e.get(t, "/v1/deliveries")
		if !utf8.Valid(r.body) {
			t.Fatalf("listed lines are not valid UTF-8: %q", r.body)
		}
		lines := ndjson(t, r.body)
		if len(lines) != 1 || string(lines[0].Body) != `{"x":"a`+"\uFFFD"+`b`+"\uFFFD"+`("}` {
			t.Fatalf("listed %q", r.body)
		}
		if raw := e.get(t, "/v1/deliveries/legacy"); !bytes.Equal(raw.body, legacy.Body) {
			t.Fatalf("raw body changed: %q", raw.body)
		}
	})
}
