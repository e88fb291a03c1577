package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/testutil/procstat"
)

// peakRSS returns the peak resident set size of process pid (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := procstat.PeakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReadAPIMemoryBounded: two readers paging through 20 bodies of 8 MiB keep the receiver's
// RSS bounded. Before pages were cut by bytes, each held its whole page (160 MB) in memory.
func TestReadAPIMemoryBounded(t *testing.T) {
	const bodies, bodySize = 20, 8 << 20
	dir := t.TempDir()
	// A 16 MiB in-flight budget gives a 64 MiB soft memory limit (see tuneGC).
	c := startChild(t, append(storeArgs(t, "sqlite", dir), "--max-in-flight-bytes", "16777216"), dir)
	pad := strings.Repeat("x", bodySize)
	for i := range bodies {
		body := fmt.Sprintf(`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":"big-%d","result":{"status":"completed","result":%q}}}`, i, pad)
		req, _ := http.NewRequest(http.MethodPost, c.url+"/webhooks/intuned", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 201 {
			t.Fatalf("post %d: %d", i, res.StatusCode)
		}
	}
	pid := c.Pid()
	// Reset the peak so it measures the reads alone (writing 5 to clear_refs resets VmHWM).
	resetOK := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	base := peakRSS(t, pid)

	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen, cursor := 0, ""
			for page := 0; page <= bodies; page++ {
				req, _ := http.NewRequest(http.MethodGet, c.url+"/v1/deliveries?limit=1000&cursor="+cursor, nil)
				req.Header.Set("Authorization", "Bearer rtok")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				sc := bufio.NewScanner(res.Body)
				sc.Buffer(nil, 2*bodySize)
				n := 0
				for sc.Scan() {
					var l struct{ RunID string }
					if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
						t.Error(err)
					}
					n++
				}
				res.Body.Close()
				if sc.Err() != nil || res.StatusCode != 200 {
					t.Errorf("page %d: %d %v", page, res.StatusCode, sc.Err())
					return
				}
				if n == 0 {
					break
				}
				seen += n
				cursor = res.Header.Get("X-Next-Cursor")
			}
			if seen != bodies {
				t.Errorf("reader saw %d deliveries, want %d", seen, bodies)
			}
		}()
	}
	wg.Wait()
	peak := peakRSS(t, pid)
	t.Logf("peak RSS %d MiB while reading (%d MiB before; peak reset: %v)", peak>>20, base>>20, resetOK)
	if peak > 150<<20 {
		t.Fatalf("peak RSS %d MiB while two readers paged through %d bodies of %d MiB; want it bounded below 150 MiB",
			peak>>20, bodies, bodySize>>20)
	}
}
