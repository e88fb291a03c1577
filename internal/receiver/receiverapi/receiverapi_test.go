package receiverapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver"
	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
)

const (
	sinkToken = "sink-token-secret-1"
	readToken = "read-token-secret-1"
)

// env is a real receiver (SQLite) behind a loopback HTTP server that counts the requests it serves.
type env struct {
	client   *receiverapi.Client
	rcv      *receiver.Receiver
	requests atomic.Int64
}

func newEnv(t *testing.T, tokenHeader string) *env {
	t.Helper()
	dir := t.TempDir()
	for name, tok := range map[string]string{"token": sinkToken, "read-token": readToken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{}
	e.rcv, err = receiver.New(receiver.Config{TokenFile: filepath.Join(dir, "token"), ReadTokenFile: filepath.Join(dir, "read-token"),
		TokenHeader: tokenHeader, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		e.rcv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); e.rcv.Close() })
	e.client = &receiverapi.Client{BaseURL: srv.URL + "/", HTTP: srv.Client()}
	return e
}

func line(runID, status string) string {
	return fmt.Sprintf(`{"name":"list","runId":%q,"parameters":{},"result":{"status":%q,"statusCode":200}}`+"\n", runID, status)
}

// TestBackfillAndSummaries: lines pushed by Backfill show up in Summaries, which reads more than
// 100 JobRuns in several requests, in the order asked.
func TestBackfillAndSummaries(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	target := receiverapi.BackfillTarget{JobRunID: "jr 1/a", JobID: "job-1", Project: "p", WorkspaceID: "ws"}
	res, err := e.client.Backfill(ctx, "Authorization", "Bearer "+sinkToken, target,
		[]byte(line("r1", "completed")+line("r2", "failed")+"{bad\n"+line("r1", "completed")))
	if err != nil {
		t.Fatal(err)
	}
	want := receiverapi.BackfillResult{Stored: 2, Present: 1, Invalid: 1, Errors: []receiverapi.LineError{
		{Line: 3, Code: "invalid_json", Message: "line is not valid JSON: invalid character 'b' looking for beginning of object key string"}}}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Errorf("Backfill = %+v, want %+v", res, want)
	}

	ids := make([]string, 250)
	for i := range ids {
		ids[i] = fmt.Sprint("jr-none-", i)
	}
	ids[0], ids[249] = target.JobRunID, target.JobRunID
	before := e.requests.Load()
	sums, err := e.client.Summaries(ctx, readToken, ids)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.requests.Load() - before; n != 3 {
		t.Errorf("%d requests for 250 JobRuns, want 3", n)
	}
	if len(sums) != 250 || sums[1].JobRunID != "jr-none-1" || sums[1].Stored != 0 || sums[1].FirstReceivedAt != nil {
		t.Fatalf("summaries: %d, %+v", len(sums), sums[1])
	}
	for _, s := range []receiverapi.Summary{sums[0], sums[249]} {
		got := fmt.Sprint(s.JobRunID, s.Stored, s.Backfilled, s.Conflicts, s.Quarantined, s.Results, s.FirstReceivedAt != nil)
		if want := "jr 1/a2 2 0 1 [{list completed 1} {list failed 1}] true"; got != want {
			t.Errorf("summary %s, want %s", got, want)
		}
	}
	if sums, err := e.client.Summaries(ctx, readToken, nil); err != nil || len(sums) != 0 {
		t.Errorf("no JobRuns: %v %v", sums, err)
	}
}

// TestCustomTokenHeader: a receiver whose sink token travels in its own header, bare.
func TestCustomTokenHeader(t *testing.T) {
	e := newEnv(t, "X-Sink-Token")
	res, err := e.client.Backfill(context.Background(), "X-Sink-Token", sinkToken,
		receiverapi.BackfillTarget{JobRunID: "jr", JobID: "j", Project: "p"}, []byte(line("r1", "completed")))
	if err != nil || res.Stored != 1 {
		t.Fatalf("Backfill = %+v, %v", res, err)
	}
}

// TestErrors: a non-2xx answer is an *APIError with the receiver's code, message and
// Retry-After, and no error string carries a token.
func TestErrors(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	target := receiverapi.BackfillTarget{JobRunID: "jr", JobID: "j", Project: "p"}
	check := func(err error, status int, code string, retryAfter time.Duration) {
		t.Helper()
		var ae *receiverapi.APIError
		if !errors.As(err, &ae) || ae.StatusCode != status || ae.Code != code || ae.RetryAfter != retryAfter {
			t.Fatalf("err = %#v, want %d %s Retry-After %v", err, status, code, retryAfter)
		}
		if receiverapi.IsTemporary(err) != (status == 429 || status >= 500) {
			t.Errorf("IsTemporary(%v) wrong", err)
		}
		for _, tok := range []string{sinkToken, readToken} {
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error %q holds a token", err)
			}
		}
	}
	_, err := e.client.Backfill(ctx, "Authorization", "Bearer "+readToken, target, []byte(line("r", "completed")))
	check(err, 401, "unauthorized", 0)
	_, err = e.client.Summaries(ctx, sinkToken, []string{"jr"})
	check(err, 401, "unauthorized", 0)
	_, err = e.client.Backfill(ctx, "Authorization", "Bearer "+sinkToken, receiverapi.BackfillTarget{JobRunID: "jr"}, nil)
	check(err, 400, "invalid_query", 0)

	e.rcv.Close() // shutting down: the writer takes nothing more
	_, err = e.client.Backfill(ctx, "Authorization", "Bearer "+sinkToken, target, []byte(line("r", "completed")))
	check(err, 503, "shutting_down", 5*time.Second)

	down := &receiverapi.Client{BaseURL: "http://127.0.0.1:1"}
	_, err = down.Backfill(ctx, "Authorization", "Bearer "+sinkToken, target, nil)
	if err == nil || strings.Contains(err.Error(), sinkToken) {
		t.Errorf("unreachable receiver: %v", err)
	}
}
