package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuf is a goroutine-safe log sink.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the command in-process and returns its printed base URL.
func start(t *testing.T, args ...string) (base string, logs *lockedBuf) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs = &lockedBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), pw, logs)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("intuned-sim did not shut down")
		}
	})
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "  Intuned base URL: "); ok {
			base = u
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if base == "" {
		t.Fatalf("no base URL printed; logs: %s", logs)
	}
	return base, logs
}

func do(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("x-api-key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The README's curl walkthrough, done over real HTTP against the command.
func TestCommandQuickstart(t *testing.T) {
	got := make(chan []byte, 100)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") == "Bearer demo-token" {
			got <- b
		}
	}))
	defer hook.Close()

	t.Setenv("INTUNED_SIM_API_KEY", "env-key")
	base, logs := start(t, "--time-scale", "600", "--products", "3", "--run-duration", "1s")
	jobs := base + "/e95cb8d1-f212-4c04-ace1-c0f77e8708c7/projects/ecommerce-scraper-quickstart/jobs"

	if code, _ := do(t, "GET", jobs, "sim-api-key", ""); code != 401 {
		t.Fatalf("default key accepted although INTUNED_SIM_API_KEY is set: %d", code)
	}
	code, body := do(t, "POST", jobs, "env-key", `{"id":"default-with-webhook","payload":[{"apiName":"list","parameters":{}}],
		"configuration":{"retry":{"maximumAttempts":3}},
		"sink":{"type":"webhook","url":"`+hook.URL+`/webhooks/intuned","headers":{"Authorization":"Bearer demo-token"}}}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body = do(t, "POST", jobs+"/default-with-webhook/trigger", "env-key", "")
	if code != 200 {
		t.Fatalf("trigger: %d %s", code, body)
	}
	names := map[string]int{}
	for len(names) < 2 || names["details"] < 3 {
		select {
		case b := <-got:
			var sb struct{ APIInfo struct{ Name string } }
			_ = json.Unmarshal(b, &sb)
			names[sb.APIInfo.Name]++
		case <-time.After(20 * time.Second):
			t.Fatalf("webhooks so far: %v", names)
		}
	}
	if names["list"] != 1 || names["details"] != 3 {
		t.Fatalf("webhooks %v", names)
	}
	if strings.Contains(logs.String(), "env-key") {
		t.Fatal("API key appears in the logs")
	}
}

func TestCommandFlags(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--help"}, "flag: help requested"},
		{[]string{"--duplicate-status", "418"}, "--duplicate-status"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--time-scale", "fast"}, "invalid value"},
		{[]string{"--normalise", "no-equals-sign"}, "normalise rule"},
		{[]string{"--normalise", "configuration.requestTimeout=not json"}, "not JSON"},
		{[]string{"--date-format", "roman"}, "unknown date format"},
		{[]string{"--results-url-lifetime", "soon"}, "invalid value"},
	}
	for _, c := range cases {
		var out, errOut lockedBuf
		err := run(context.Background(), c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.wantErr)
		}
	}
	var out, errOut lockedBuf
	_ = run(context.Background(), []string{"--help"}, &out, &errOut)
	for _, want := range []string{"INTUNED_SIM_", "--time-scale", "-rate-limit", "Example",
		"Does not model: the Run API", "AuthSessions", "-normalise", "-date-format", "-omit-detail-payload"} {
		if !strings.Contains(errOut.String(), strings.TrimPrefix(want, "-")) {
			t.Errorf("--help lacks %q", want)
		}
	}
	t.Setenv("INTUNED_SIM_RATE_LIMIT", "many")
	if err := run(context.Background(), nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "INTUNED_SIM_RATE_LIMIT") {
		t.Errorf("bad env value: %v", err)
	}
}

// --fake-clock freezes time; the admin API moves it and scheduled runs fire.
func TestCommandFakeClock(t *testing.T) {
	base, _ := start(t, "--fake-clock", "--rate-limit", "0", "--run-duration", "0s")
	root := strings.TrimSuffix(base, "/api/v1/workspace")
	jobs := base + "/e95cb8d1-f212-4c04-ace1-c0f77e8708c7/projects/demo/jobs"
	if code, body := do(t, "POST", jobs, "sim-api-key", `{"id":"every-ten-minutes","payload":[{"apiName":"list","parameters":{}}],
		"configuration":{},"schedule":{"intervals":[{"every":"10m"}]}}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := do(t, "POST", root+"/_sim/clock/advance", "", `{"duration":"30m"}`); code != 200 {
		t.Fatalf("advance: %d %s", code, body)
	}
	_, body := do(t, "GET", jobs+"/every-ten-minutes/runs", "sim-api-key", "")
	var page struct{ TotalCount int }
	_ = json.Unmarshal([]byte(body), &page)
	if page.TotalCount != 3 {
		t.Fatalf("%d scheduled runs after 30 simulated minutes: %s", page.TotalCount, body)
	}
}

// --results-url-lifetime is the lifetime of results URLs; the admin API
// reads and changes it.
func TestCommandResultsURLLifetime(t *testing.T) {
	base, _ := start(t, "--fake-clock", "--results-url-lifetime", "5m")
	root := strings.TrimSuffix(base, "/api/v1/workspace")
	if code, body := do(t, "GET", root+"/_sim/settings", "", ""); code != 200 || !strings.Contains(body, `"resultsUrlLifetime":"5m0s"`) {
		t.Fatalf("settings: %d %s", code, body)
	}
	if code, body := do(t, "POST", root+"/_sim/settings", "", `{"resultsUrlLifetime":"20s"}`); code != 200 || !strings.Contains(body, `"20s"`) {
		t.Fatalf("set: %d %s", code, body)
	}
}
