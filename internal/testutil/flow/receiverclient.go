// Package flow drives the quickstart on a local cluster, emulated
// (internal/testutil/emucluster) or real (internal/testutil/kcluster): it
// renders config/samples, runs and reads intuned-sim, triggers jobs, rotates
// tokens, reads a receiver's store and compares it with what the simulator
// sent. It imports no test package: hack/demo uses it too.
package flow

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// StoredDelivery is one line of the receiver's read API (GET /v1/deliveries).
type StoredDelivery struct {
	RunID      string          `json:"runId"`
	JobID      string          `json:"jobId"`
	JobRunID   string          `json:"jobRunId"`
	Project    string          `json:"project"`
	API        string          `json:"api"`
	Status     string          `json:"status"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Cursor     string          `json:"cursor"`
	Backfilled bool            `json:"backfilled"`
	Body       json.RawMessage `json:"body"`
}

// ReceiverClient reads a receiver's store through its read API.
type ReceiverClient struct {
	BaseURL   string // e.g. http://127.0.0.1:1234 (a replica, or the externalURL's host)
	ReadToken string
}

func (rc ReceiverClient) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+rc.ReadToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// List returns every stored delivery of jobID and jobRunID ("" = all),
// following the cursor to the end.
func (rc ReceiverClient) List(ctx context.Context, jobID, jobRunID string) ([]StoredDelivery, error) {
	var all []StoredDelivery
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if jobID != "" {
			q.Set("job", jobID)
		}
		if jobRunID != "" {
			q.Set("jobRun", jobRunID)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		resp, err := rc.get(ctx, rc.BaseURL+"/v1/deliveries?"+q.Encode())
		if err != nil {
			return nil, err
		}
		n := 0
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			var d StoredDelivery
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("decode NDJSON line: %w", err)
			}
			all = append(all, d)
			n++
		}
		err = sc.Err()
		next := resp.Header.Get("X-Next-Cursor")
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if n == 0 || next == "" || next == cursor {
			return all, nil
		}
		cursor = next
	}
}

// Raw returns one delivery's body exactly as stored.
func (rc ReceiverClient) Raw(ctx context.Context, runID string) ([]byte, error) {
	resp, err := rc.get(ctx, rc.BaseURL+"/v1/deliveries/"+url.PathEscape(runID))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Backup downloads a backup of the receiver's SQLite store (GET /v1/backup, read token) and
// checks it against the SHA-256 the receiver sent with it.
func (rc ReceiverClient) Backup(ctx context.Context) ([]byte, error) {
	resp, err := rc.get(ctx, rc.BaseURL+"/v1/backup")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(b); resp.Header.Get("X-Backup-Sha256") != hex.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("backup of %d bytes: SHA-256 %x, the receiver sent %q", len(b), sum, resp.Header.Get("X-Backup-Sha256"))
	}
	return b, nil
}

// Restore uploads a backup into the receiver (PUT /v1/backup with its ingest token), which must
// be empty, and returns its answer.
func (rc ReceiverClient) Restore(ctx context.Context, ingestToken string, backup []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, rc.BaseURL+"/v1/backup", bytes.NewReader(backup))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("PUT /v1/backup: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}
