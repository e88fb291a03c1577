package intunedsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStart is the fake clock's start for deterministic tests.
var testStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC) // a Monday

const testProject = "ecommerce-scraper-quickstart"

// newFake starts a simulator on a fake clock with a fixed seed and no rate
// limit unless opts says otherwise.
func newFake(t *testing.T, opts Options) (*TestServer, *FakeClock) {
	t.Helper()
	fc := NewFakeClock(testStart)
	opts.Clock = fc
	if opts.Seed == 0 {
		opts.Seed = 7
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = RateLimitOff
	}
	return NewTestServer(t, opts), fc
}

type resp struct {
	status int
	body   []byte
	header http.Header
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// call makes a real HTTP request against the simulator. path is relative to
// the project ("/jobs/...") unless it starts with "/api" or "/_sim".
func call(t *testing.T, ts *TestServer, method, path string, body any, hdr ...string) resp {
	t.Helper()
	url := ts.URL + path
	if !strings.HasPrefix(path, "/api") && !strings.HasPrefix(path, "/_sim") {
		url = ts.APIBase + "/" + ts.WorkspaceID + "/projects/" + testProject + path
	}
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", ts.APIKey)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, b, res.Header}
}

func mustStatus(t *testing.T, r resp, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

// quickstartJob is the seed guide's job, with the webhook URL filled in.
func quickstartJob(id, url string) map[string]any {
	return map[string]any{
		"id":            id,
		"payload":       []any{map[string]any{"apiName": "list", "parameters": map[string]any{}}},
		"configuration": map[string]any{"retry": map[string]any{"maximumAttempts": 3}},
		"sink": map[string]any{
			"type": "webhook", "url": url,
			"headers": map[string]string{"Authorization": "Bearer your-secret-token"},
		},
	}
}

func minimalJob(id string) map[string]any {
	return map[string]any{
		"id":            id,
		"payload":       []any{map[string]any{"apiName": "details", "parameters": map[string]any{"detailsUrl": "https://x.test/p/", "name": "P"}}},
		"configuration": map[string]any{},
	}
}

// hook is a webhook endpoint that records every request and answers with
// the status its function returns.
type hookReq struct {
	header http.Header
	body   []byte
}

type hook struct {
	reqs   chan hookReq
	status func(n int) int
	mu     sync.Mutex
	n      int
}

func newHook(t *testing.T, status func(n int) int) (*hook, string) {
	t.Helper()
	h := &hook{reqs: make(chan hookReq, 1000), status: status}
	srv := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.reqs <- hookReq{r.Header.Clone(), b}
		h.mu.Lock()
		h.n++
		n := h.n
		h.mu.Unlock()
		code := 200
		if h.status != nil {
			code = h.status(n)
		}
		w.WriteHeader(code)
	}))
	return h, srv + "/webhooks/intuned"
}

func (h *hook) drain() []hookReq {
	var out []hookReq
	for {
		select {
		case r := <-h.reqs:
			out = append(out, r)
		default:
			return out
		}
	}
}
