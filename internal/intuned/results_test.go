package intuned

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim/simtest"
)

func TestJobRunResultsExpires(t *testing.T) {
	cases := []struct {
		in     *JobRunResults
		want   time.Time
		wantOK bool
	}{
		{&JobRunResults{SignedURLExpiration: "2026-01-05T10:00:00.000Z"}, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC), true},
		{&JobRunResults{SignedURLExpiration: "2026-01-05 11:00:00+01"}, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC), true},
		{&JobRunResults{}, time.Time{}, false},
		{&JobRunResults{SignedURLExpiration: "tomorrow"}, time.Time{}, false},
		{nil, time.Time{}, false},
	}
	for _, c := range cases {
		got, ok := c.in.Expires()
		if ok != c.wantOK || !got.Equal(c.want) {
			t.Errorf("%+v: Expires() = %s, %v; want %s, %v", c.in, got, ok, c.want, c.wantOK)
		}
	}
}

// finishedSimRun runs a three-product quickstart JobRun on a fake-clock
// simulator and returns its Get Job Run answer through the Client.
func finishedSimRun(t *testing.T) (*intunedsim.LoopbackServer, *Client, *GetJobRunResponse) {
	t.Helper()
	sim := simtest.New(t, intunedsim.Options{Clock: intunedsim.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)),
		RateLimit: intunedsim.RateLimitOff, Catalogue: intunedsim.CatalogueOptions{Products: 3}})
	c, err := New(Options{BaseURL: sim.APIBase, WorkspaceID: sim.WorkspaceID, APIKey: sim.APIKey, Pacer: NewPacer(PacerOptions{Disabled: true})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const project, job = "results-project", "results-job"
	if _, err := c.CreateJob(ctx, project, CreateJobRequest{ID: job, Payload: []PayloadItem{{APIName: "list", Parameters: json.RawMessage(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	trig, err := c.TriggerJob(ctx, project, job)
	if err != nil {
		t.Fatal(err)
	}
	sim.Advance(time.Hour)
	run, err := c.GetJobRun(ctx, project, job, trig.JobRunID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Results == nil || run.Results.Size == nil || run.Results.Format != "jsonl" {
		t.Fatalf("results %+v", run.Results)
	}
	return sim, c, run
}

// TestOpenResultsAgainstSim downloads the results file from the simulator:
// whole, resumed from an offset, and refused (expired or tampered URLs).
func TestOpenResultsAgainstSim(t *testing.T) {
	sim, _, run := finishedSimRun(t)
	want, ok := sim.ResultsFile(run.JobRun.ID)
	if !ok || int64(len(want)) != *run.Results.Size {
		t.Fatalf("file %d bytes, size %d", len(want), *run.Results.Size)
	}
	if exp, ok := run.Results.Expires(); !ok || !exp.Equal(sim.Clock().Now().Add(time.Hour)) {
		t.Fatalf("Expires() = %s, %v", exp, ok)
	}
	withURL := func(f func(q url.Values)) *JobRunResults {
		u, _ := url.Parse(run.Results.SignedURL)
		q := u.Query()
		f(q)
		u.RawQuery = q.Encode()
		r := *run.Results
		r.SignedURL = u.String()
		return &r
	}
	size := int64(len(want))
	cases := []struct {
		name        string
		results     *JobRunResults
		offset      int64
		advance     time.Duration
		wantBody    string
		wantExpired bool
		wantCode    string
	}{
		{name: "whole file", results: run.Results, wantBody: string(want)},
		{name: "from an offset", results: run.Results, offset: 17, wantBody: string(want[17:])},
		{name: "at the end", results: run.Results, offset: size, wantBody: ""},
		{name: "wrong signature", results: withURL(func(q url.Values) { q.Set("X-Amz-Signature", strings.Repeat("ab", 32)) }), wantExpired: true, wantCode: "SignatureDoesNotMatch"},
		{name: "no signature", results: withURL(func(q url.Values) { q.Del("X-Amz-Signature") }), wantExpired: true, wantCode: "SignatureDoesNotMatch"},
		{name: "expired", results: run.Results, advance: time.Hour + time.Second, wantExpired: true, wantCode: "AccessDenied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sim.Advance(c.advance) // the expiry case comes last
			body, err := OpenResults(context.Background(), nil, c.results, c.offset)
			if c.wantCode != "" {
				var re *ResultsError
				if !errors.As(err, &re) || re.Code != c.wantCode || errors.Is(err, ErrResultsURLExpired) != c.wantExpired {
					t.Fatalf("err %v, want code %s (expired %v)", err, c.wantCode, c.wantExpired)
				}
				if strings.Contains(err.Error(), "X-Amz") {
					t.Fatalf("error shows the URL's credential: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if err != nil || string(got) != c.wantBody {
				t.Fatalf("read %q, %v; want %q", got, err, c.wantBody)
			}
		})
	}
}

// TestOpenResultsResumesCutTransfer: a transfer cut mid-file (the
// simulator's truncateLine fault) is resumed from the bytes already read.
func TestOpenResultsResumesCutTransfer(t *testing.T) {
	sim, _, run := finishedSimRun(t)
	want, _ := sim.ResultsFile(run.JobRun.ID)
	sim.SetResultsFaults([]intunedsim.ResultsFault{{TruncateLine: 2, Times: 1}})
	body, err := OpenResults(context.Background(), nil, run.Results, 0)
	if err != nil {
		t.Fatal(err)
	}
	first, err := io.ReadAll(body)
	body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(first) == 0 || len(first) >= len(want) {
		t.Fatalf("cut transfer: %d bytes, %v", len(first), err)
	}
	body, err = OpenResults(context.Background(), nil, run.Results, int64(len(first)))
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(body)
	body.Close()
	if err != nil || string(first)+string(rest) != string(want) {
		t.Fatalf("resumed: %v\n%s%s\nwant\n%s", err, first, rest, want)
	}
}

// TestOpenResultsServerShapes covers answers the simulator does not give:
// a server that ignores Range, error statuses and what they mean.
func TestOpenResultsServerShapes(t *testing.T) {
	const file = "line one\nline two\n"
	var sawKey, sawRange atomic.Value
	cases := []struct {
		name        string
		handler     http.HandlerFunc
		offset      int64
		wantBody    string
		wantStatus  int
		wantExpired bool
	}{
		{name: "200 to a ranged request", offset: 5, wantBody: file[5:], handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, file)
		}},
		{name: "206 from the wrong byte", offset: 5, wantStatus: -1, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-17/18")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, file)
		}},
		{name: "400 ExpiredToken", wantStatus: 400, wantExpired: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>`)
		}},
		{name: "403 without a body", wantStatus: 403, wantExpired: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
		}},
		{name: "404 NoSuchKey", wantStatus: 404, handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>`)
		}},
		{name: "500", wantStatus: 500, handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sawKey.Store(r.Header.Get("x-api-key") + r.Header.Get("Authorization"))
				sawRange.Store(r.Header.Get("Range"))
				c.handler(w, r)
			}))
			defer srv.Close()
			r := &JobRunResults{SignedURL: srv.URL + "/bucket/run.jsonl?X-Amz-Signature=secret", Format: "jsonl"}
			body, err := OpenResults(context.Background(), srv.Client(), r, c.offset)
			if sawKey.Load() != "" {
				t.Errorf("credentials sent: %q", sawKey.Load())
			}
			if want := map[bool]string{true: "bytes=5-", false: ""}[c.offset == 5]; sawRange.Load() != want {
				t.Errorf("Range %q, want %q", sawRange.Load(), want)
			}
			if c.wantStatus != 0 {
				var re *ResultsError
				switch {
				case err == nil:
					body.Close()
					t.Fatal("no error")
				case c.wantStatus == -1:
				case !errors.As(err, &re) || re.StatusCode != c.wantStatus || errors.Is(err, ErrResultsURLExpired) != c.wantExpired:
					t.Fatalf("err %v, want status %d (expired %v)", err, c.wantStatus, c.wantExpired)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error shows the URL's credential: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			if got, err := io.ReadAll(body); err != nil || string(got) != c.wantBody {
				t.Fatalf("read %q, %v", got, err)
			}
		})
	}
	if _, err := OpenResults(context.Background(), nil, &JobRunResults{SignedURL: "file:///etc/passwd"}, 0); err == nil {
		t.Error("a non-http URL was opened")
	}
}
