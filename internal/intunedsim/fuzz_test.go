package intunedsim

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzDecodeJobSpec feeds arbitrary bodies to the Create/Update decoder.
// It must never panic, and whatever it accepts must be a fixed point: the
// stored job, encoded and decoded again, is accepted and unchanged, and its
// schedule (if any) yields a next run time without hanging.
// `go test` runs the seed corpus; `go test -fuzz FuzzDecodeJobSpec` explores.
func FuzzDecodeJobSpec(f *testing.F) {
	seeds := []string{
		`{"id":"default-with-webhook","payload":[{"apiName":"list","parameters":{}}],"configuration":{"retry":{"maximumAttempts":3}},"sink":{"type":"webhook","url":"https://x.test/h","headers":{"Authorization":"Bearer t"}}}`,
		`{"id":"my-awesome-job","payload":[{"apiName":"a","parameters":{"k":"v"},"requestTimeout":600,"retry":{"maximumAttempts":3}}],"configuration":{"retry":{},"maxConcurrentRequests":5,"requestTimeout":600},"schedule":{"jitter":"6h","intervals":[{"every":3600000},{"every":"1h"}],"calendars":[{"hour":12,"minute":51,"dayOfWeek":["MONDAY","FRIDAY"]},{"second":"*","month":{"start":"JANUARY","end":"MARCH","step":2},"year":[2026,{"start":2030}]}]},"proxy":"http://u:p@h:8080","auth_session":{"id":"as-1"}}`,
		`{"id":"s3-sink-job","payload":[],"configuration":{},"sink":{"type":"s3","bucket":"b","accessKeyId":"a","secretAccessKey":"s","region":"r","prefix":"p/","endpoint":"https://r2","forcePathStyle":true,"skipOnFail":true,"apisToSend":["x"]}}`,
		`{"id":"abc"}`,
		`{"id":"bad id!","payload":"x","configuration":5}`,
		`{"payload":[{"apiName":"","parameters":[]}],"configuration":{"maxConcurrentRequests":0}}`,
		`{"id":"cal-job-1","payload":[],"configuration":{},"schedule":{"calendars":[{"dayOfMonth":{"start":31,"end":1}}]}}`,
		`{"id":"cal-job-2","payload":[],"configuration":{},"schedule":{"calendars":[{"dayOfWeek":[["MONDAY"]]}]}}`,
		`{"id":"cal-job-3","payload":[],"configuration":{},"schedule":{"calendars":[{"year":1969}]}}`,
		`{"id":"int-job-1","payload":[],"configuration":{},"schedule":{"intervals":[{"every":"0.0001ms"},{"every":1e300}]}}`,
		`{"id":"sink-job1","payload":[],"configuration":{},"sink":{"type":"webhook","url":"ftp://x","timeout":-1}}`,
		`[]`, `null`, `"x"`, `{`, ``, `{"id":null,"payload":null,"configuration":null}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, withID bool) {
		spec, sched, apiErr := decodeJobSpec(body, withID)
		if apiErr != nil {
			if apiErr.status != 400 || apiErr.code != "bad-request" || apiErr.message == "" {
				t.Fatalf("bad error %+v", apiErr)
			}
			return
		}
		if withID {
			if _, ok := validJobID(spec.ID); !ok {
				t.Fatalf("accepted invalid id %q", spec.ID)
			}
		}
		again, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		spec2, _, apiErr := decodeJobSpec(again, withID)
		if apiErr != nil {
			t.Fatalf("stored form rejected: %s\n%s", apiErr.message, again)
		}
		if !reflect.DeepEqual(spec, spec2) {
			t.Fatalf("not a fixed point:\n%+v\n%+v", spec, spec2)
		}
		sched.next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	})
}
