package intuned

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeResponse feeds arbitrary bytes to every response type the client
// decodes, and to the error path. Decoding may fail, but must not panic, and
// whatever decodes must re-encode to a fixed point: encode(decode(x)) decodes
// and encodes to the same bytes again. The seeds are the golden files, so a
// plain `go test` checks them; `go test -fuzz=FuzzDecodeResponse` explores.
func FuzzDecodeResponse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"hour":[1,{"start":"MONDAY","step":2}],"month":"*"}`,
		`{"type":"webhook","url":"u","retry":3,"timeout":5000}`,
		`{"every":1e400}`,
		`[{"start":-0}]`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}

	shapes := []func() any{
		func() any { return new(Job) },
		func() any { return new([]JobListItem) },
		func() any { return new(JobRunList) },
		func() any { return new(GetJobRunResponse) },
		func() any { return new(CreateJobResponse) },
		func() any { return new(UpdateJobResponse) },
		func() any { return new(TriggerJobResponse) },
		func() any { return new(MessageResponse) },
		func() any { return new(ErrorBody) },
		func() any { return new(CreateJobRequest) },
		func() any { return new(UpdateJobRequest) },
		func() any { return new(Schedule) },
		func() any { return new(Calendar) },
		func() any { return new(CalendarField) },
		func() any { return new(Sink) },
	}
	c := &Client{apiKey: "k", clock: realClock{}}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, newV := range shapes {
			v := newV()
			if json.Unmarshal(data, v) != nil {
				continue
			}
			once, err := json.Marshal(v)
			if err != nil {
				// Decoded values must always be encodable, except a Sink
				// or calendar field that decoded from JSON null stays
				// empty; those are never sent on their own.
				if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
					continue
				}
				t.Fatalf("%T decoded from %q but does not encode: %v", v, data, err)
			}
			v2 := newV()
			if err := json.Unmarshal(once, v2); err != nil {
				t.Fatalf("%T: own encoding %s does not decode: %v", v, once, err)
			}
			twice, err := json.Marshal(v2)
			if err != nil || !bytes.Equal(once, twice) {
				t.Fatalf("%T: not a fixed point:\n once %s\ntwice %s (%v)", v, once, twice, err)
			}
		}
		// The error path must cope with anything a server or proxy sends.
		e := c.apiError("Fuzz", &http.Response{StatusCode: 500, Header: http.Header{}}, data)
		if e.StatusCode != 500 || e.Code == "" || !e.Retriable {
			t.Fatalf("apiError: %+v", e)
		}
		_ = e.Error()
	})
}
