package receiver

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSinkBodyGuideSample(t *testing.T) {
	// The sample payload from Intuned's webhook guide.
	sample := `{
    "workspaceId": "e95cb8d1-f212-4c04-ace1-c0f77e8708c7",
    "apiInfo": {
        "name": "details",
        "runId": "656CxOdANRlR5lWUAt_eC",
        "parameters": {"detailsUrl": "https://www.scrapingcourse.com/ecommerce/product/abominable-hoodie/", "name": "Abominable Hoodie"},
        "result": {"status": "completed", "result": [{"id": "prod-1", "name": "Wireless Headphones", "price": "$79.99"}], "statusCode": 200}
    },
    "project": {"id": "482bf507-5fcc-43ed-9443-d8fff86015c4", "name": "ecommerce-scraper-quickstart"},
    "projectJob": {"id": "default-with-webhook"},
    "projectJobRun": {"id": "08523ea6-5c6b-413e-995a-40e4f6fd7846"}
}`
	m, err := parseSinkBody([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := sinkMeta{RunID: "656CxOdANRlR5lWUAt_eC", JobID: "default-with-webhook", JobRunID: "08523ea6-5c6b-413e-995a-40e4f6fd7846",
		Project: "ecommerce-scraper-quickstart", APIName: "details", ResultStatus: "completed"}
	if m != want {
		t.Fatalf("got %+v\nwant %+v", m, want)
	}
}

var fuzzSeeds = []string{
	validBody("seed-1"),
	`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"r","result":{"status":"failed","error":"E","message":"m","statusCode":500}}}`,
	`{"workspaceId":"w","project":{"name":"p"},"projectJob":{"id":""},"apiInfo":{"name":"a","runId":"r","result":{"status":"completed"}}}`,
	`{"workspaceId":1}`, `[]`, `null`, `"s"`, `{}`, `{"apiInfo":null}`, `{"project":{"name":null}}`, "\xff",
	`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"r","result":{"status":"completed"}}} x`,
	`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"r","RUNID":"s","result":{"status":"completed"}}}`,
	`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"r","runId":"s","result":{"status":"completed"}}}`,
	`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","r\u0075nId":"r","result":{"status":"completed"}}}`,
	`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"\udc00","result":{"status":"completed"}}}`,
	"{\"workspaceId\":\"w\",\"project\":{\"name\":\"p\"},\"apiInfo\":{\"name\":\"a\",\"runId\":\"r\xff\",\"result\":{\"status\":\"completed\"}}}",
}

// FuzzParseSinkBody: the decoder never panics, and whatever it accepts has every required column.
func FuzzParseSinkBody(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := parseSinkBody(body)
		if err != nil {
			var be *bodyError
			if !errors.As(err, &be) || be.msg == "" ||
				(be.reason != reasonInvalidJSON && be.reason != reasonNotSinkBody && be.reason != reasonInvalidUTF8 && be.reason != reasonTooDeep) {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if m.RunID == "" || m.Project == "" || m.APIName == "" || (m.ResultStatus != "completed" && m.ResultStatus != "failed") {
			t.Fatalf("accepted an incomplete body: %+v", m)
		}
		if len(m.RunID) > maxIDLen || len(m.JobID) > maxIDLen || len(m.JobRunID) > maxIDLen {
			t.Fatalf("accepted an over-long id: %+v", m)
		}
	})
}

// BenchmarkParseSinkBody: validation of a ~1 KiB body like hack/bench-receiver sends.
func BenchmarkParseSinkBody(b *testing.B) {
	body := []byte(`{"workspaceId":"e95cb8d1-f212-4c04-ace1-c0f77e8708c7","project":{"id":"482bf507","name":"bench"},` +
		`"projectJob":{"id":"bench-job"},"projectJobRun":{"id":"08523ea6-5c6b-413e-995a-40e4f6fd7846"},` +
		`"apiInfo":{"name":"details","runId":"sqlite-r0-1234567","parameters":{},"result":{"status":"completed","statusCode":200,` +
		`"result":{"pad":"` + strings.Repeat("x", 700) + `"}}}}`)
	b.ReportAllocs()
	for range b.N {
		if _, err := parseSinkBody(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseSinkBodyKeys: what the receiver keys on is what every JSON reader sees.
func TestParseSinkBodyKeys(t *testing.T) {
	withAPIInfo := func(members string) string {
		return `{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a",` + members + `,"result":{"status":"completed"}}}`
	}
	nested := func(arrays int) string { // the result payload is at depth 4
		return strings.Replace(validBody("deep"), `"result":[1]`, `"result":`+strings.Repeat("[", arrays)+strings.Repeat("]", arrays), 1)
	}
	cases := []struct {
		name, body string
		wantRunID  string // when accepted
		wantReason string // when rejected
	}{
		{"case variant is another field", withAPIInfo(`"runId":"A","RUNID":"B"`), "A", ""},
		{"case variant after", withAPIInfo(`"RUNID":"B","runId":"A"`), "A", ""},
		{"only a case variant", withAPIInfo(`"RunId":"A"`), "", reasonNotSinkBody},
		{"runId twice", withAPIInfo(`"runId":"A","runId":"B"`), "", reasonNotSinkBody},
		{"runId twice, one escaped", withAPIInfo(`"runId":"A","r\u0075nId":"B"`), "", reasonNotSinkBody},
		{"escaped name", withAPIInfo(`"r\u0075nId":"A"`), "A", ""},
		{"apiInfo twice", `{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"A","result":{"status":"completed"}},"apiInfo":{"name":"a","runId":"B","result":{"status":"completed"}}}`, "", reasonNotSinkBody},
		{"other field twice is fine", withAPIInfo(`"runId":"A","parameters":1,"parameters":2`), "A", ""},
		{"invalid UTF-8 in runId", withAPIInfo("\"runId\":\"A\xff\""), "", reasonInvalidUTF8},
		{"invalid UTF-8 elsewhere", withAPIInfo("\"runId\":\"A\",\"x\":\"\xc3\x28\""), "", reasonInvalidUTF8},
		{"lone surrogate in runId", withAPIInfo(`"runId":"\ud800"`), "", reasonNotSinkBody},
		{"lone surrogate elsewhere is valid JSON", withAPIInfo(`"runId":"A","x":"\ud800"`), "A", ""},
		{"128 levels", nested(maxNestingDepth - 3), "deep", ""},
		{"129 levels", nested(maxNestingDepth - 2), "", reasonTooDeep},
		{"9000 levels", nested(9000), "", reasonTooDeep},
		{"deep but invalid", "{" + strings.Repeat("[", 9000), "", reasonTooDeep},
		{"brackets in strings do not nest", withAPIInfo(`"runId":"A","x":"` + strings.Repeat("[{", 500) + `"`), "A", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := parseSinkBody([]byte(c.body))
			var be *bodyError
			switch {
			case c.wantReason == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case c.wantReason == "" && m.RunID != c.wantRunID:
				t.Fatalf("runId %q, want %q", m.RunID, c.wantRunID)
			case c.wantReason != "" && (!errors.As(err, &be) || be.reason != c.wantReason):
				t.Fatalf("got %+v (%v), want reason %s", m, err, c.wantReason)
			}
		})
	}
}

// TestRejectedBodyKeepsItsJobRun: a body that is no sink body still names its JobRun (for the
// JobRun's summary) when its projectJobRun.id is usable, and never an unusable one.
func TestRejectedBodyKeepsItsJobRun(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"runId missing", `{"workspaceId":"w","project":{"name":"p"},"projectJobRun":{"id":"jr-1"},"apiInfo":{"name":"a","result":{"status":"completed"}}}`, "jr-1"},
		{"unknown status", `{"workspaceId":"w","project":{"name":"p"},"projectJobRun":{"id":"jr-1"},"apiInfo":{"name":"a","runId":"r","result":{"status":"odd"}}}`, "jr-1"},
		{"control character in the JobRun id", `{"workspaceId":"w","projectJobRun":{"id":"jr\u0000"}}`, ""},
		{"JobRun id too long", `{"workspaceId":"w","projectJobRun":{"id":"` + strings.Repeat("j", maxIDLen+1) + `"}}`, ""},
		{"blank JobRun id", `{"workspaceId":"w","projectJobRun":{"id":" "}}`, ""},
		{"invalid JSON", `{"projectJobRun":{"id":"jr-1"}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := parseSinkBody([]byte(c.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if m.JobRunID != c.want || m.RunID != "" {
				t.Errorf("meta %+v, want JobRunID %q alone", m, c.want)
			}
		})
	}
}
