package receiver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

var fastSeeds = []string{
	`{"workspaceId":"w","project":{"id":"x","name":"p"},"projectJob":{"id":"j"},"projectJobRun":{"id":"jr"},"apiInfo":{"name":"a","runId":"r","parameters":{"a":[1,{"b":"}"}],"c":null},"result":{"status":"completed","statusCode":200,"result":[{"x":"y\"z"}]}}}`,
	` { "workspaceId" : "w" , "project" : { "name" : "p" } , "apiInfo" : { "name" : "a" , "runId" : "r" , "result" : { "status" : "failed" } } } `,
	`{"WorkspaceId":"w"}`, `{"workspaceid":"w","workspaceId":"v"}`, `{"workspaceId":"w","workspaceId":"v"}`,
	`{"project":{"name":"a"},"project":{"id":"b"}}`, `{"project":null}`, `{"project":{"name":null}}`,
	`{"workspaceId":"w\u00e9"}`, `{"workspaceId":"wé"}`, `{"workspaceId":"w\"x"}`, `{"w\u006frkspaceId":"w"}`,
	`{"apiInfo":{"runId":1}}`, `{"apiInfo":[]}`, `{"apiInfo":{"result":{"status":true}}}`, `{"x":1e5,"y":-0.5,"z":[true,false,null]}`,
	`{"projectJob":{"ID":"j"}}`, `{"projectJob":{"id":"j","Id":"k"}}`, `{"a":"\\","workspaceId":"w"}`, `{"a":{"b":{"c":[[]]}},"workspaceId":"w"}`,
	`{}`, `[]`, `1`, `"x"`, `null`, `{"a":1}x`, `{"a":}`, "\xff", `{"\xff":1}`, `{"a":"\xff","workspaceId":"w"}`,
	// Issue 14: exact, case-sensitive field names; ours at most once; escaped names; depth; UTF-8.
	`{"apiInfo":{"runId":"A","RUNID":"B"}}`, `{"apiInfo":{"RUNID":"B","runId":"A"}}`, `{"apiInfo":{"runId":"A","runId":"B"}}`,
	`{"apiInfo":{"runId":"A","r\u0075nId":"B"}}`, `{"apiInfo":{"r\u0075nId":"A"}}`, `{"APIINFO":{"runId":"A"},"apiInfo":{"runId":"B"}}`,
	`{"workspaceId":"w","WorkspaceId":"v"}`, `{"parameters":1,"parameters":2,"workspaceId":"w"}`, `{"project":{"name":"a","name":"b"}}`,
	`{"apiInfo":{"runId":"\ud800"}}`, `{"apiInfo":{"runId":"a\ufffd"}}`, "{\"apiInfo\":{\"runId\":\"\xc3\x28\"}}", "{\"a\":\"\xed\xa0\x80\"}",
	`{"a":` + strings.Repeat("[", maxNestingDepth-1) + strings.Repeat("]", maxNestingDepth-1) + `}`,
	`{"a":` + strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth) + `}`,
	`{"a":"` + strings.Repeat("[", 300) + `"}`, strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200),
}

// FuzzDecodeSinkBodyFast: whenever the fast decoder accepts a body, the reference decoder
// (decodeSinkBody) decodes exactly the same struct without error, so parseSinkBody answers the
// same either way.
func FuzzDecodeSinkBodyFast(f *testing.F) {
	for _, s := range append(fastSeeds, fuzzSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast sinkBody
		if !decodeSinkBodyFast(body, &fast) {
			return
		}
		var slow sinkBody
		if err := decodeSinkBody(body, &slow); err != nil {
			t.Fatalf("fast decoder accepted %q, decodeSinkBody says %v", body, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoders disagree on %q:\nfast %s\nslow %s", body, dump(fast), dump(slow))
		}
	})
}

func dump(b sinkBody) string {
	out, _ := json.Marshal(b)
	return string(out)
}

// TestDecodeSinkBodyFastTakesRealBodies: the shapes Intuned sends take the fast path.
func TestDecodeSinkBodyFastTakesRealBodies(t *testing.T) {
	for _, body := range []string{fastSeeds[0], fastSeeds[1], validBody("run-1")} {
		var b sinkBody
		if !decodeSinkBodyFast([]byte(body), &b) {
			t.Errorf("fast path refused %s", body)
		}
	}
}

// TestWriteIngestResponseMatchesWriteJSON: the hand-built answer is byte for byte what
// encoding/json writes, for plain run ids and for ones that need escaping (those take writeJSON).
func TestWriteIngestResponseMatchesWriteJSON(t *testing.T) {
	for _, id := range []string{"656CxOdANRlR5lWUAt_eC", "run-1.2~x", "a\"b", `a\b`, "<&>", "é", "\x7f", "a b/c"} {
		for _, status := range []string{"stored", "duplicate"} {
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			writeJSON(want, http.StatusCreated, ingestResponse{RunID: id, Status: status})
			writeIngestResponse(got, http.StatusCreated, ingestResponse{RunID: id, Status: status})
			if got.Body.String() != want.Body.String() || got.Code != want.Code ||
				got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
				t.Errorf("runId %q: got %d %q %q, want %d %q %q", id, got.Code, got.Header().Get("Content-Type"), got.Body,
					want.Code, want.Header().Get("Content-Type"), want.Body)
			}
		}
	}
}
