package intunedsim

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json")

// checkGolden compares got (JSON) with testdata/golden/name, pretty-printed.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, got, "", "  "); err != nil {
		t.Fatalf("%s: not JSON: %s", name, got)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", "golden", name)
	if *update {
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update)", err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s differs from golden file:\n got: %s\nwant: %s", name, buf.Bytes(), want)
	}
}

// checkDocumentedShape compares the key structure and JSON types of got with
// a documented example in testdata/documented: the same keys at every level
// (optional lists keys that may be absent from either side), the same types
// (null matches anything: nullable fields). Free-form values (parameters,
// results) are listed in freeform and not descended into.
func checkDocumentedShape(t *testing.T, docName string, got []byte, optional, freeform []string) {
	t.Helper()
	docBytes, err := os.ReadFile(filepath.Join("testdata", "documented", docName))
	if err != nil {
		t.Fatal(err)
	}
	var doc, out any
	if err := json.Unmarshal(docBytes, &doc); err != nil {
		t.Fatalf("%s: %v", docName, err)
	}
	if err := json.Unmarshal(got, &out); err != nil {
		t.Fatal(err)
	}
	var problems []string
	shapeDiff(doc, out, "", optional, freeform, &problems)
	if len(problems) > 0 {
		t.Errorf("%s: shape differs from the documented example:\n  %s\n got: %s", docName, strings.Join(problems, "\n  "), got)
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

func shapeDiff(doc, got any, path string, optional, freeform []string, problems *[]string) {
	for _, f := range freeform {
		if f == path {
			return
		}
	}
	if doc == nil || got == nil {
		return
	}
	if jsonKind(doc) != jsonKind(got) {
		*problems = append(*problems, fmt.Sprintf("%s: documented %s, got %s", path, jsonKind(doc), jsonKind(got)))
		return
	}
	switch d := doc.(type) {
	case map[string]any:
		g := got.(map[string]any)
		keys := map[string]bool{}
		for k := range d {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := strings.TrimPrefix(path+"."+k, ".")
			dv, inDoc := d[k]
			gv, inGot := g[k]
			isOpt := false
			for _, o := range optional {
				isOpt = isOpt || o == p
			}
			switch {
			case !inDoc && !isOpt:
				*problems = append(*problems, p+": not in the documented shape")
			case !inGot && !isOpt:
				*problems = append(*problems, p+": documented but missing")
			case inDoc && inGot:
				shapeDiff(dv, gv, p, optional, freeform, problems)
			}
		}
	case []any:
		g := got.([]any)
		if len(d) > 0 && len(g) > 0 {
			shapeDiff(d[0], g[0], path+"[]", optional, freeform, problems)
		}
	}
}

// TestGoldenAndDocumentedShapes drives one deterministic session (fake
// clock, fixed seed) through every endpoint and checks each response against
// its golden file and the documented example's shape.
func TestGoldenAndDocumentedShapes(t *testing.T) {
	h, url := newHook(t, nil)
	ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 2, FailureShare: 0.5}})
	job := map[string]any{
		"id":      "my-awesome-job",
		"payload": []any{map[string]any{"apiName": "list", "parameters": map[string]any{}, "retry": map[string]any{"maximumAttempts": 1}}},
		"configuration": map[string]any{
			"retry": map[string]any{"maximumAttempts": 1}, "maxConcurrentRequests": 1,
		},
		"schedule":     map[string]any{"intervals": []any{map[string]any{"every": "1h"}}},
		"sink":         map[string]any{"type": "webhook", "url": url, "headers": map[string]string{"Authorization": "Bearer x"}, "apisToSend": []string{"list", "details"}},
		"auth_session": map[string]any{"id": "auth-session-123"},
		"proxy":        "http://user:pass@host:8080",
	}
	r := call(t, ts, "POST", "/jobs", job)
	mustStatus(t, r, 201)
	checkGolden(t, "create.json", r.body)
	checkDocumentedShape(t, "create.json", r.body, nil, nil)

	r = call(t, ts, "GET", "/jobs/my-awesome-job", nil)
	// The sink URL is the test's random port; blank it for the golden file.
	stable := func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte(url), []byte("http://hook.test/webhooks/intuned"))
	}
	checkGolden(t, "job-detail.json", stable(r.body))
	checkDocumentedShape(t, "job-detail.json", r.body, nil, []string{"payload[].parameters"})

	mustStatus(t, call(t, ts, "POST", "/jobs/my-awesome-job/pause", nil), 200)
	r = call(t, ts, "GET", "/jobs", nil)
	checkGolden(t, "job-list-paused.json", stable(r.body))
	var items []json.RawMessage
	r.decode(t, &items)
	checkDocumentedShape(t, "job-list-item.json", items[0], nil, []string{"payload[].parameters"})
	r = call(t, ts, "POST", "/jobs/my-awesome-job/resume", nil)
	checkGolden(t, "resume.json", r.body)

	r = call(t, ts, "POST", "/jobs/my-awesome-job/trigger", nil)
	checkGolden(t, "trigger.json", r.body)
	checkDocumentedShape(t, "trigger.json", r.body, nil, nil)
	var trig struct{ JobRunID string }
	r.decode(t, &trig)
	ts.WaitIdleT(t)

	r = call(t, ts, "GET", "/jobs/my-awesome-job/runs/"+trig.JobRunID, nil)
	// The signature depends on the Server's random key.
	unsigned := regexp.MustCompile(`X-Amz-Signature=[0-9a-f]+`).ReplaceAll(r.body, []byte("X-Amz-Signature=SIGNATURE"))
	checkGolden(t, "job-run.json", bytes.ReplaceAll(stable(unsigned), []byte(ts.URL), []byte("http://sim.test")))
	checkDocumentedShape(t, "job-run.json", r.body, nil, nil)
	var withResults struct {
		Results struct {
			SignedURL string `json:"signed_url"`
			Size      int    `json:"size"`
		} `json:"results"`
	}
	r.decode(t, &withResults)
	file := call(t, ts, "GET", strings.TrimPrefix(withResults.Results.SignedURL, ts.URL), nil)
	if file.status != 200 || len(file.body) != withResults.Results.Size || bytes.Count(file.body, []byte("\n")) != 3 {
		t.Fatalf("results file %d (%d bytes, want %d): %s", file.status, len(file.body), withResults.Results.Size, file.body)
	}
	r = call(t, ts, "GET", "/jobs/my-awesome-job/runs?pageSize=10&pageNumber=0&sortBy=start_time,desc", nil)
	checkGolden(t, "job-runs.json", stable(r.body))
	checkDocumentedShape(t, "job-runs.json", r.body, nil, nil)
	r = call(t, ts, "POST", "/jobs/my-awesome-job/runs/"+trig.JobRunID+"/terminate", nil)
	checkGolden(t, "terminate.json", r.body)

	// Sink bodies: list (completed), the failing details and the good one.
	reqs := h.drain()
	if len(reqs) != 3 {
		t.Fatalf("%d webhooks", len(reqs))
	}
	byKind := map[string][]byte{}
	for _, q := range reqs {
		var b struct {
			APIInfo struct {
				Name   string
				Result struct{ Status string }
			}
		}
		_ = json.Unmarshal(q.body, &b)
		byKind[b.APIInfo.Name+"-"+b.APIInfo.Result.Status] = q.body
	}
	for _, kind := range []string{"list-completed", "details-completed", "details-failed"} {
		body := byKind[kind]
		checkGolden(t, "sink-body-"+kind+".json", body)
		doc := "sink-body.json"
		if strings.HasSuffix(kind, "failed") {
			doc = "sink-body-failed.json"
		}
		checkDocumentedShape(t, doc, body, []string{"authSession"}, []string{"apiInfo.parameters", "apiInfo.result.result"})
	}

	upd := map[string]any{"payload": job["payload"], "configuration": map[string]any{}}
	r = call(t, ts, "PUT", "/jobs/my-awesome-job", upd)
	checkGolden(t, "update.json", r.body)
	checkDocumentedShape(t, "update.json", r.body, nil, nil)

	errs := map[string]resp{
		"error-400.json": call(t, ts, "POST", "/jobs", `{"id":"abc","payload":[{"apiName":"list"}]}`),
		"error-401.json": call(t, ts, "GET", "/jobs", nil, "x-api-key", "wrong"),
		"error-404.json": call(t, ts, "GET", "/jobs/no-such-job", nil),
	}
	limited, _ := newFake(t, Options{RateLimit: 1})
	call(t, limited, "GET", "/jobs", nil)
	errs["error-429.json"] = call(t, limited, "GET", "/jobs", nil)
	for name, e := range errs {
		checkGolden(t, name, e.body)
		checkDocumentedShape(t, "error.json", e.body, []string{"details"}, []string{"details"})
	}
	r = call(t, ts, "DELETE", "/jobs/my-awesome-job", nil)
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("delete %d %q", r.status, r.body)
	}
}
