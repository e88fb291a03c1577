package receiver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIngestStatuses(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, func(c *Config) { c.MaxBodyBytes = 2048 })
		if r := e.post(t, ingestToken, validBody("already-there")); r.status != http.StatusCreated {
			t.Fatalf("seed delivery: %d %s", r.status, r.body)
		}
		big := validBody("big") + strings.Repeat(" ", 4096)
		cases := []struct {
			name       string
			method     string
			header     map[string]string // replaces the defaults when a key is set; "" deletes
			body       string
			chunked    bool // send without Content-Length
			wantStatus int
			wantCode   string
			quarantine bool
		}{
			{name: "new delivery", body: validBody("r-new"), wantStatus: 201},
			{name: "duplicate", body: validBody("already-there"), wantStatus: 200},
			{name: "no Content-Type is tolerated", header: map[string]string{"Content-Type": ""}, body: validBody("r-noct"), wantStatus: 201},
			{name: "json with charset", header: map[string]string{"Content-Type": "application/json; charset=utf-8"}, body: validBody("r-cs"), wantStatus: 201},
			{name: "run API body without job", body: `{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"r-nojob","result":{"status":"failed","error":"x","message":"m"}}}`, wantStatus: 201},
			{name: "GET", method: http.MethodGet, wantStatus: 405, wantCode: "method"},
			{name: "PUT", method: http.MethodPut, body: validBody("r-put"), wantStatus: 405, wantCode: "method"},
			{name: "no token", header: map[string]string{"Authorization": ""}, body: validBody("r1"), wantStatus: 401, wantCode: "unauthorized"},
			{name: "wrong token", header: map[string]string{"Authorization": "Bearer nope"}, body: validBody("r1"), wantStatus: 401, wantCode: "unauthorized"},
			{name: "token without Bearer", header: map[string]string{"Authorization": ingestToken}, body: validBody("r1"), wantStatus: 401, wantCode: "unauthorized"},
			{name: "read token is not an ingest token", header: map[string]string{"Authorization": "Bearer " + readToken}, body: validBody("r1"), wantStatus: 401, wantCode: "unauthorized"},
			{name: "form body", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "a=b", wantStatus: 415, wantCode: "media_type"},
			{name: "too large", body: big, wantStatus: 413, wantCode: "too_large"},
			{name: "too large, chunked", body: big, chunked: true, wantStatus: 413, wantCode: "too_large"},
			{name: "not JSON", body: "{nope", wantStatus: 400, wantCode: "invalid_json", quarantine: true},
			{name: "empty body", body: "", wantStatus: 400, wantCode: "invalid_json", quarantine: true},
			{name: "array", body: `[1,2]`, wantStatus: 400, wantCode: "not_sink_body", quarantine: true},
			{name: "missing runId", body: strings.Replace(validBody("x"), `"runId":"x",`, "", 1), wantStatus: 400, wantCode: "not_sink_body", quarantine: true},
			{name: "unknown status", body: strings.Replace(validBody("x"), `"completed"`, `"running"`, 1), wantStatus: 400, wantCode: "not_sink_body", quarantine: true},
			{name: "runId is a number", body: strings.Replace(validBody("x"), `"x"`, `7`, 1), wantStatus: 400, wantCode: "not_sink_body", quarantine: true},
			{name: "NUL in runId", body: strings.Replace(validBody("x"), `"x"`, `"a\u0000b"`, 1), wantStatus: 400, wantCode: "not_sink_body", quarantine: true},
			{name: "trailing garbage", body: validBody("x") + "}", wantStatus: 400, wantCode: "invalid_json", quarantine: true},
			// Issue 14: what the receiver keys on is what every reader sees.
			{name: "invalid UTF-8 in runId", body: strings.Replace(validBody("x"), `"x"`, "\"x\xff\"", 1), wantStatus: 400, wantCode: "invalid_utf8", quarantine: true},
			{name: "invalid UTF-8 in the result", body: strings.Replace(validBody("x"), `[1]`, "\"\xc3\x28\"", 1), wantStatus: 400, wantCode: "invalid_utf8", quarantine: true},
			{name: "deep nesting", body: strings.Replace(validBody("x"), `[1]`, strings.Repeat("[", 700)+strings.Repeat("]", 700), 1), wantStatus: 400, wantCode: "too_deep", quarantine: true},
			{name: "runId given twice", body: strings.Replace(validBody("x"), `"runId":"x"`, `"runId":"x","runId":"y"`, 1), wantStatus: 400, wantCode: "not_sink_body", quarantine: true},
			{name: "RUNID is not runId", body: strings.Replace(validBody("case-A"), `"runId":"case-A"`, `"runId":"case-A","RUNID":"case-B"`, 1), wantStatus: 201},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before := e.count(t, "quarantine")
				method := c.method
				if method == "" {
					method = http.MethodPost
				}
				var body io.Reader = strings.NewReader(c.body)
				if c.chunked {
					body = io.MultiReader(body) // hides the length from net/http
				}
				req, _ := http.NewRequest(method, e.url+"/webhooks/intuned", body)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+ingestToken)
				for k, v := range c.header {
					if v == "" {
						req.Header.Del(k)
					} else {
						req.Header.Set(k, v)
					}
				}
				r := do(t, req)
				if r.status != c.wantStatus || r.code != c.wantCode {
					t.Fatalf("got %d %q (%s), want %d %q", r.status, r.code, r.body, c.wantStatus, c.wantCode)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				if c.wantStatus == 405 && r.header.Get("Allow") != "POST" {
					t.Errorf("405 without Allow: POST")
				}
				if got := e.count(t, "quarantine") - before; got != map[bool]int{true: 1}[c.quarantine] {
					t.Errorf("quarantined %d bodies, want quarantine=%v", got, c.quarantine)
				}
			})
		}
		if n := e.count(t, "deliveries"); n != 6 {
			t.Errorf("deliveries stored = %d, want 6", n)
		}
		if e.get(t, "/v1/deliveries/case-A").status != 200 || e.get(t, "/v1/deliveries/case-B").status != 404 {
			t.Errorf("the body with runId and RUNID is not stored under runId")
		}
	})
}

func TestConcurrentDuplicatesStoredOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, nil)
		const senders, runs = 50, 5
		statuses := make([][]int, senders)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for r := range runs {
					statuses[s] = append(statuses[s], e.post(t, ingestToken, validBody(fmt.Sprintf("dup-%d", r))).status)
				}
			}()
		}
		close(start)
		wg.Wait()
		created := map[int]int{}
		for s := range senders {
			for r, st := range statuses[s] {
				switch st {
				case http.StatusCreated:
					created[r]++
				case http.StatusOK:
				default:
					t.Fatalf("sender %d run %d: status %d", s, r, st)
				}
			}
		}
		for r := range runs {
			if created[r] != 1 {
				t.Errorf("dup-%d: %d senders got 201, want exactly 1", r, created[r])
			}
		}
		if n := e.count(t, "deliveries"); n != runs {
			t.Errorf("stored %d rows, want %d", n, runs)
		}
	})
}

// swapSecret updates a Kubernetes-style Secret volume: files are symlinks into ..data, which is
// itself a symlink atomically renamed to a fresh timestamped directory.
func swapSecret(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	gen, err := os.MkdirTemp(dir, "..gen_")
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		writeFile(t, filepath.Join(gen, name), content)
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func TestTokenRotation(t *testing.T) {
	secret := t.TempDir()
	swapSecret(t, secret, map[string]string{"token": "old-token\n"})
	e := newEnv(t, "sqlite", func(c *Config) {
		c.TokenFile = filepath.Join(secret, "token")
		c.PreviousTokenFile = filepath.Join(secret, "previous-token") // absent for now
	})
	n := 0
	accepted := func(tok string) bool {
		n++
		r := e.post(t, tok, validBody(fmt.Sprintf("rot-%d", n)))
		if r.status != http.StatusCreated && r.status != http.StatusUnauthorized {
			t.Fatalf("unexpected status %d %s", r.status, r.body)
		}
		return r.status == http.StatusCreated
	}
	if !accepted("old-token") || accepted("new-token") {
		t.Fatal("before rotation: want only old-token accepted")
	}

	// Rotation: new current token, old one kept as previous during the grace window.
	swapSecret(t, secret, map[string]string{"token": "new-token", "previous-token": "old-token"})
	eventually(t, "new token accepted", func() bool { return accepted("new-token") })
	if !accepted("old-token") {
		t.Fatal("previous token rejected during the grace window")
	}

	// Grace window over: the previous token is removed from the Secret.
	os.Remove(filepath.Join(secret, "previous-token"))
	swapSecret(t, secret, map[string]string{"token": "new-token"})
	eventually(t, "old token rejected", func() bool { return !accepted("old-token") })
	if !accepted("new-token") {
		t.Fatal("current token rejected after rotation")
	}

	// A broken update (empty file) must not lock everyone out: the last good token stays.
	swapSecret(t, secret, map[string]string{"token": ""})
	time.Sleep(100 * time.Millisecond) // several reload intervals
	if !accepted("new-token") {
		t.Fatal("empty token file replaced the last good token")
	}
}

func TestCustomHeaderAndPath(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config) { c.TokenHeader = "X-Intuned-Token"; c.IngestPath = "/in" })
	for _, v := range []string{ingestToken, "Bearer " + ingestToken} {
		req, _ := http.NewRequest(http.MethodPost, e.url+"/in", strings.NewReader(validBody("c-"+v[:3])))
		req.Header.Set("X-Intuned-Token", v)
		if r := do(t, req); r.status != http.StatusCreated {
			t.Fatalf("%q: %d %s", v, r.status, r.body)
		}
	}
	if r := e.post(t, ingestToken, validBody("c3")); r.status != http.StatusNotFound || r.code != "not_found" {
		t.Fatalf("default path still served: %d", r.status)
	}
}

func TestReadAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, nil)
		raw := "{\"workspaceId\":\"w\", \"project\":{\"name\":\"p\"},\n \"projectJob\":{\"id\":\"job-2\"},\"apiInfo\":{\"name\":\"list\",\"runId\":\"raw-1\",\"result\":{\"status\":\"failed\",\"error\":\"E\"}}}\n"
		for i := range 5 {
			if r := e.post(t, ingestToken, validBody(fmt.Sprintf("read-%d", i))); r.status != 201 {
				t.Fatal(r.status)
			}
		}
		if r := e.post(t, ingestToken, raw); r.status != 201 {
			t.Fatal(r.status)
		}

		// The raw body comes back byte for byte.
		r := e.get(t, "/v1/deliveries/raw-1")
		if r.status != 200 || string(r.body) != raw {
			t.Fatalf("get raw: %d %q", r.status, r.body)
		}
		if r := e.get(t, "/v1/deliveries/nope"); r.status != 404 || r.code != "not_found" {
			t.Fatalf("missing: %d %s", r.status, r.body)
		}

		// Page through everything, two at a time.
		var ids []string
		cursor := ""
		for page := 0; ; page++ {
			r := e.get(t, "/v1/deliveries?limit=2&cursor="+cursor)
			if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
				t.Fatalf("list: %d %s", r.status, r.body)
			}
			lines := ndjson(t, r.body)
			if len(lines) == 0 {
				break
			}
			for _, l := range lines {
				ids = append(ids, l.RunID)
			}
			cursor = r.header.Get("X-Next-Cursor")
			if page > 10 {
				t.Fatal("paging does not end")
			}
		}
		if got := fmt.Sprint(ids); got != "[read-0 read-1 read-2 read-3 read-4 raw-1]" {
			t.Errorf("paged ids = %s", got)
		}

		filters := map[string]string{
			"?job=job-2":                            "[raw-1]",
			"?status=failed":                        "[raw-1]",
			"?api=details&limit=2":                  "[read-0 read-1]",
			"?jobRun=jr-1&limit=1":                  "[read-0]",
			"?since=2000-01-01T00:00:00Z&job=job-2": "[raw-1]",
			"?since=2999-01-01T00:00:00Z":           "[]",
		}
		for q, want := range filters {
			r := e.get(t, "/v1/deliveries"+q)
			var got []string
			for _, l := range ndjson(t, r.body) {
				got = append(got, l.RunID)
			}
			if fmt.Sprint(got) != want {
				t.Errorf("%s: got %v, want %s", q, got, want)
			}
		}
		// The listed body is the stored JSON.
		lines := ndjson(t, e.get(t, "/v1/deliveries?job=job-2").body)
		var body struct{ WorkspaceID string }
		if err := json.Unmarshal(lines[0].Body, &body); err != nil || body.WorkspaceID != "w" {
			t.Errorf("listed body: %s (%v)", lines[0].Body, err)
		}

		bad := map[string]string{
			"/v1/deliveries?limit=0":         "invalid_limit",
			"/v1/deliveries?limit=x":         "invalid_limit",
			"/v1/deliveries?since=yesterday": "invalid_since",
			"/v1/deliveries?cursor=!!":       "invalid_cursor",
			"/v1/deliveries?status=bogus":    "invalid_status",
			"/v1/deliveries?status=Failed":   "invalid_status",
		}
		for path, code := range bad {
			if r := e.get(t, path); r.status != 400 || r.code != code {
				t.Errorf("%s: %d %q, want 400 %q", path, r.status, r.code, code)
			}
		}
		// The read API has its own token.
		for _, tok := range []string{"", ingestToken} {
			req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/deliveries", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			if r := do(t, req); r.status != 401 {
				t.Errorf("token %q: %d, want 401", tok, r.status)
			}
		}
	})
}

func TestReadAPIDisabledWithoutToken(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config) { c.ReadTokenFile = "" })
	if r := e.get(t, "/v1/deliveries"); r.status != 404 || r.code != "read_api_disabled" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func ndjson(t *testing.T, b []byte) []listedDelivery {
	t.Helper()
	var out []listedDelivery
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l listedDelivery
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad NDJSON line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestStoreTroubleAnswersRetryLater(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		t.Run("deadline", func(t *testing.T) {
			e := newEnv(t, kind, func(c *Config) { c.Deadline = 300 * time.Millisecond })
			release := e.lockWrites(t)
			r := e.post(t, ingestToken, validBody("slow-1"))
			release()
			if r.status != 503 || r.code != "deadline" || r.header.Get("Retry-After") == "" {
				t.Fatalf("got %d %q Retry-After=%q, want 503 deadline with Retry-After", r.status, r.code, r.header.Get("Retry-After"))
			}
			// Intuned's retry then lands (stored now, or a duplicate if the slow commit finished).
			eventually(t, "retry succeeds", func() bool {
				s := e.post(t, ingestToken, validBody("slow-1")).status
				return s == 200 || s == 201
			})
		})
		t.Run("overload", func(t *testing.T) {
			e := newEnv(t, kind, func(c *Config) { c.MaxInFlight = 1; c.Deadline = 5 * time.Second })
			release := e.lockWrites(t)
			first := make(chan response, 1)
			go func() { first <- e.post(t, ingestToken, validBody("held")) }()
			eventually(t, "first delivery in flight", func() bool { return e.rcv.inFlight.Load() == 1 })
			r := e.post(t, ingestToken, validBody("second"))
			release()
			if r.status != 429 || r.code != "overloaded" || r.header.Get("Retry-After") == "" {
				t.Fatalf("got %d %q, want 429 overloaded with Retry-After", r.status, r.code)
			}
			if r := <-first; r.status != 201 {
				t.Fatalf("held delivery: %d %s", r.status, r.body)
			}
		})
		t.Run("byte budget", func(t *testing.T) {
			e := newEnv(t, kind, func(c *Config) { c.MaxInFlightBytes = 1500; c.Deadline = 5 * time.Second })
			release := e.lockWrites(t)
			first := make(chan response, 1)
			go func() { first <- e.post(t, ingestToken, validBody("held-b")) }() // ~330 bytes
			eventually(t, "first delivery in flight", func() bool { return e.rcv.inFlight.Load() == 1 })
			r := e.post(t, ingestToken, validBody("big-b")+strings.Repeat(" ", 1500))
			release()
			if r.status != 429 || r.code != "overloaded" {
				t.Fatalf("got %d %q, want 429 overloaded", r.status, r.code)
			}
			if r := <-first; r.status != 201 {
				t.Fatalf("held delivery: %d %s", r.status, r.body)
			}
		})
		t.Run("store closed", func(t *testing.T) {
			e := newEnv(t, kind, nil)
			if r := e.get(t, "/readyz"); r.status != 200 {
				t.Fatalf("readyz before: %d", r.status)
			}
			e.st.Close()
			r := e.post(t, ingestToken, validBody("lost?"))
			if r.status != 503 || r.code != "store_unavailable" || r.header.Get("Retry-After") == "" {
				t.Fatalf("got %d %q, want 503 store_unavailable", r.status, r.code)
			}
			if r := e.post(t, ingestToken, "{bad"); r.status != 503 {
				t.Fatalf("invalid body with no store to quarantine into: %d, want 503", r.status)
			}
			if r := e.get(t, "/readyz"); r.status != 503 {
				t.Fatalf("readyz after: %d", r.status)
			}
		})
	})
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	e.post(t, ingestToken, validBody("m1"))
	e.post(t, ingestToken, validBody("m1"))
	e.post(t, "bad", validBody("m2"))
	if r := e.get(t, "/healthz"); r.status != 200 {
		t.Fatal(r.status)
	}
	r := e.get(t, "/metrics")
	for _, want := range []string{
		"receiver_deliveries_received_total 3",
		"receiver_deliveries_stored_total 1",
		"receiver_deliveries_duplicate_total 1",
		`receiver_deliveries_rejected_total{reason="unauthorized"} 1`,
		"receiver_commit_batch_size_count 2",
		"receiver_commit_duration_seconds_count 2",
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	e.rcv.Drain()
	if r := e.get(t, "/readyz"); r.status != 503 {
		t.Errorf("readyz while draining: %d", r.status)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	writeFile(t, token, "x")
	cases := map[string]Config{
		"no token file":      {},
		"missing token file": {TokenFile: filepath.Join(dir, "nope")},
		"empty token file":   {TokenFile: func() string { p := filepath.Join(dir, "empty"); writeFile(t, p, " \n"); return p }()},
		"relative path":      {TokenFile: token, IngestPath: "webhooks"},
		"root path":          {TokenFile: token, IngestPath: "/"},
		"taken path":         {TokenFile: token, IngestPath: "/metrics"},
		"missing read token": {TokenFile: token, ReadTokenFile: filepath.Join(dir, "nope")},
	}
	for name, cfg := range cases {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// TestConflictingDuplicate: a second, different body for a stored runId keeps the first (the
// contract), is kept in quarantine rather than dropped, is counted and logged, and is answered
// 2xx with status "conflict" so the sender can tell without Intuned retrying forever.
func TestConflictingDuplicate(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		var logs syncBuffer
		e := newEnv(t, kind, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
		first := validBody("twice")
		second := strings.Replace(first, `"result":[1]`, `"result":[1,2,3]`, 1)
		steps := []struct {
			name, body string
			status     int
			answer     string
			quarantine int
		}{
			{"first", first, 201, "stored", 0},
			{"same body again", first, 200, "duplicate", 0},
			{"different body", second, 200, "conflict", 1},
			{"different body again", second, 200, "conflict", 1},
		}
		for _, s := range steps {
			before := e.count(t, "quarantine")
			r := e.post(t, ingestToken, s.body)
			var ans ingestResponse
			json.Unmarshal(r.body, &ans) //nolint:errcheck // checked below
			if r.status != s.status || ans.Status != s.answer || ans.RunID != "twice" {
				t.Fatalf("%s: %d %s, want %d %q", s.name, r.status, r.body, s.status, s.answer)
			}
			if got := e.count(t, "quarantine") - before; got != s.quarantine {
				t.Errorf("%s: %d bodies quarantined, want %d", s.name, got, s.quarantine)
			}
		}
		if r := e.get(t, "/v1/deliveries/twice"); string(r.body) != first {
			t.Errorf("stored body is %s, want the first", r.body)
		}
		if n := e.count(t, "deliveries"); n != 1 {
			t.Errorf("%d deliveries stored, want 1", n)
		}
		if n := e.countWhere(t, "quarantine", "reason LIKE 'conflicting_duplicate:%'"); n != 2 {
			t.Errorf("%d quarantined as conflicting_duplicate, want 2", n)
		}
		if !bytes.Contains(e.get(t, "/metrics").body, []byte("receiver_deliveries_conflict_total 2")) {
			t.Error("conflicts not counted")
		}
		warn := fmt.Sprintf(`"storedBytes":%d,"receivedBytes":%d`, len(first), len(second))
		if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), warn) {
			t.Errorf("no warning with both sizes (%s) in:\n%s", warn, logs.String())
		}
	})
}
