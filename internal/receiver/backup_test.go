package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/postgres"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// runBody is a sink body of one Run of JobRun jobRun.
func runBody(runID, jobRun, api, status string) string {
	return fmt.Sprintf(`{"workspaceId":"ws","project":{"name":"ecommerce"},"projectJob":{"id":"job-1"},"projectJobRun":{"id":%q},`+
		`"apiInfo":{"name":%q,"runId":%q,"result":{"status":%q,"result":{"n":%q}}}}`, jobRun, api, runID, status, runID)
}

// fill gives e's store a bit of everything the read API shows: deliveries of two JobRuns and of
// the Run API, a body with whitespace (kept byte for byte), a conflicting duplicate, an invalid
// body and a backfilled result.
func fill(t *testing.T, e *testEnv) {
	t.Helper()
	for i := range 30 {
		jobRun, api, status := "jr-1", "list", "completed"
		if i%3 == 0 {
			jobRun = "jr-2"
		}
		if i%4 == 0 {
			api = "details"
		}
		if i%5 == 0 {
			status = "failed"
		}
		if r := e.post(t, ingestToken, runBody(fmt.Sprint("run-", i), jobRun, api, status)); r.status != http.StatusCreated {
			t.Fatalf("delivery %d: %d %s", i, r.status, r.body)
		}
	}
	for _, c := range []struct {
		body   string
		status int
	}{
		{strings.Replace(runBody("spaced", "jr-1", "list", "completed"), `"result":{`, "\"result\" :\n\t{", 1), http.StatusCreated},
		{`{"workspaceId":"ws","project":{"name":"p"},"apiInfo":{"name":"run-api","runId":"no-job","result":{"status":"completed"}}}`, http.StatusCreated},
		{strings.Replace(runBody("run-1", "jr-1", "list", "completed"), `{"n"`, `{"m"`, 1), http.StatusOK}, // a conflict
		{strings.Replace(runBody("x", "jr-2", "list", "completed"), `"runId":"x",`, "", 1), http.StatusBadRequest},
	} {
		if r := e.post(t, ingestToken, c.body); r.status != c.status {
			t.Fatalf("%s: %d %s, want %d", c.body, r.status, r.body, c.status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/jobruns/jr-2/backfill?jobId=job-1&project=ecommerce",
		strings.NewReader(`{"name":"details","runId":"backfilled-1","result":{"status":"completed","result":1}}`))
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	if r := do(t, req); r.status != http.StatusOK || !strings.Contains(string(r.body), `"stored":1`) {
		t.Fatalf("backfill: %d %s", r.status, r.body)
	}
}

// readView is everything e's read API answers, byte for byte: the deliveries 7 a page with their
// cursors, the JobRun pages and summaries, and every raw body with its headers.
func readView(t *testing.T, e *testEnv) []string {
	t.Helper()
	var out, runIDs []string
	listPages(t, e, func(r response) {
		out = append(out, fmt.Sprintf("deliveries %s: %s", r.header.Get("X-Next-Cursor"), r.body))
		for _, l := range lines(r.body) {
			var d listedDelivery
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				t.Fatal(err)
			}
			runIDs = append(runIDs, d.RunID)
		}
	})
	for cursor := ""; ; {
		r := e.get(t, "/v1/jobruns?limit=1&cursor="+url.QueryEscape(cursor))
		var page struct {
			JobRuns []struct {
				JobRunID string `json:"jobRunId"`
			} `json:"jobRuns"`
			NextCursor string `json:"nextCursor"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != http.StatusOK {
			t.Fatalf("job runs: %d %s", r.status, r.body)
		}
		out = append(out, "jobruns: "+string(r.body))
		if len(page.JobRuns) == 0 {
			break
		}
		for _, jr := range page.JobRuns {
			out = append(out, "summary: "+string(e.get(t, "/v1/jobruns/"+jr.JobRunID+"/summary").body))
		}
		cursor = page.NextCursor
	}
	for _, id := range runIDs {
		r := e.get(t, "/v1/deliveries/"+url.PathEscape(id))
		out = append(out, fmt.Sprintf("raw %s %d at %s backfilled %q: %s", id, r.status, r.header.Get("X-Received-At"), r.header.Get("X-Backfilled"), r.body))
	}
	return out
}

// listPages pages through e's /v1/deliveries, 7 a page, calling each with
// every answer up to and including the first empty page.
func listPages(t *testing.T, e *testEnv, each func(response)) {
	t.Helper()
	for cursor := ""; ; {
		r := e.get(t, "/v1/deliveries?limit=7&cursor="+url.QueryEscape(cursor))
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		each(r)
		if len(r.body) == 0 {
			return
		}
		cursor = r.header.Get("X-Next-Cursor")
	}
}

// lines splits an NDJSON page.
func lines(b []byte) []string {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// sameView fails t when two receivers' read APIs answer differently.
func sameView(t *testing.T, want, got []string) {
	t.Helper()
	if len(want) < 40 {
		t.Fatalf("the source shows only %d answers; fill it first", len(want))
	}
	if strings.Join(want, "\n") == strings.Join(got, "\n") {
		return
	}
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			t.Fatalf("answer %d differs:\nsource   %s\nrestored %s", i, want[i], got[i])
		}
	}
	t.Fatalf("%d answers from the source, %d from the restored receiver", len(want), len(got))
}

// takeBackup downloads e's backup and checks its headers.
func (e *testEnv) takeBackup(t *testing.T) []byte {
	t.Helper()
	r := e.get(t, "/v1/backup")
	if r.status != http.StatusOK {
		t.Fatalf("backup: %d %s", r.status, r.body)
	}
	sum := sha256.Sum256(r.body)
	if got := r.header.Get(backupSHA256Header); got != hex.EncodeToString(sum[:]) {
		t.Errorf("%s %q, the body's is %x", backupSHA256Header, got, sum)
	}
	if ct, cl := r.header.Get("Content-Type"), r.header.Get("Content-Length"); ct != "application/vnd.sqlite3" || cl != strconv.Itoa(len(r.body)) {
		t.Errorf("Content-Type %q, Content-Length %q for %d bytes", ct, cl, len(r.body))
	}
	return r.body
}

// restore uploads a backup to e with token.
func (e *testEnv) restore(t *testing.T, token string, data []byte) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, e.url+"/v1/backup", bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

// TestBackupRestore: a backup of a SQLite receiver restored into a new one serves the same
// answers through the whole read API, and the restored receiver then takes deliveries on from
// where the first one was.
func TestBackupRestore(t *testing.T) {
	src := newEnv(t, "sqlite", nil)
	fill(t, src)
	data := src.takeBackup(t)

	dst := newEnv(t, "sqlite", nil)
	r := dst.restore(t, ingestToken, data)
	var res restoreResponse
	if err := json.Unmarshal(r.body, &res); err != nil || r.status != http.StatusOK {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	sum := sha256.Sum256(data)
	if want := (restoreResponse{Restored: 33, Quarantined: 2, SchemaVersion: sqlite.SchemaVersion(), SHA256: hex.EncodeToString(sum[:])}); res != want {
		t.Errorf("restore answered %+v, want %+v", res, want)
	}
	sameView(t, readView(t, src), readView(t, dst))

	if r := dst.post(t, ingestToken, runBody("run-1", "jr-1", "list", "completed")); r.status != http.StatusOK || !strings.Contains(string(r.body), `"duplicate"`) {
		t.Errorf("a restored run id sent again: %d %s, want a duplicate", r.status, r.body)
	}
	storesAfterRestored(t, dst)
}

// storesAfterRestored checks that a receiver with restored deliveries stores a new one, listed
// after them.
func storesAfterRestored(t *testing.T, dst *testEnv) {
	t.Helper()
	if r := dst.post(t, ingestToken, runBody("after", "jr-1", "list", "completed")); r.status != http.StatusCreated {
		t.Fatalf("a delivery after the restore: %d %s", r.status, r.body)
	}
	if last := lastLine(t, dst.get(t, "/v1/deliveries?limit=1000").body); !strings.Contains(last, `"runId":"after"`) {
		t.Errorf("the delivery after the restore is not listed last: %s", last)
	}
}

func lastLine(t *testing.T, ndjson []byte) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(ndjson)), "\n")
	return lines[len(lines)-1]
}

// TestRestoreRefusals: a restore with the wrong token or method, of a file that is not a usable
// backup (not a database, truncated, damaged, another application's), or into a store that holds
// something, is refused with a JSON error and changes nothing; the receiver still takes a good
// backup afterwards, once.
func TestRestoreRefusals(t *testing.T) {
	src := newEnv(t, "sqlite", nil)
	fill(t, src)
	data := src.takeBackup(t)
	dst := newEnv(t, "sqlite", nil)

	damaged := bytes.Clone(data)
	for i := 2 * 4096; i < len(damaged)-4096; i += 4096 { // every page's header but the first and last
		copy(damaged[i:i+16], bytes.Repeat([]byte{0xa5}, 16))
	}
	other := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('hi')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	otherApp, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name           string
		method, token  string
		body           []byte
		status         int
		code, contains string
	}{
		{"read token", http.MethodPut, readToken, data, http.StatusUnauthorized, "unauthorized", ""},
		{"POST", http.MethodPost, ingestToken, data, http.StatusMethodNotAllowed, "method", ""},
		{"not a database", http.MethodPut, ingestToken, []byte(strings.Repeat("not sqlite ", 1000)), http.StatusBadRequest, "invalid_backup", "cannot be read as a SQLite database"},
		{"empty", http.MethodPut, ingestToken, nil, http.StatusBadRequest, "invalid_backup", "empty"},
		{"truncated", http.MethodPut, ingestToken, data[:len(data)/2], http.StatusBadRequest, "invalid_backup", ""},
		{"damaged pages", http.MethodPut, ingestToken, damaged, http.StatusBadRequest, "invalid_backup", ""},
		{"another application's database", http.MethodPut, ingestToken, otherApp, http.StatusBadRequest, "invalid_backup", "schema version 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, dst.url+"/v1/backup", bytes.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+c.token)
			r := do(t, req)
			if r.status != c.status || r.code != c.code || !strings.Contains(string(r.body), c.contains) {
				t.Errorf("%d %s, want %d %s containing %q", r.status, r.body, c.status, c.code, c.contains)
			}
			if n := dst.count(t, "deliveries") + dst.count(t, "quarantine"); n != 0 {
				t.Errorf("%d rows in the store after a refused restore", n)
			}
			if left := tempFiles(t, dst.dir); len(left) > 0 {
				t.Errorf("files left beside the store: %v", left)
			}
		})
	}

	if r := dst.restore(t, ingestToken, data); r.status != http.StatusOK {
		t.Fatalf("restore after the refusals: %d %s", r.status, r.body)
	}
	r := dst.restore(t, ingestToken, data)
	if r.status != http.StatusConflict || r.code != "store_not_empty" {
		t.Errorf("a second restore: %d %s, want 409 store_not_empty", r.status, r.body)
	}
	if n := dst.count(t, "deliveries"); n != 33 {
		t.Errorf("%d deliveries after the refused second restore, want 33", n)
	}
	// Not into a store that holds a single quarantined body either.
	fresh := newEnv(t, "sqlite", nil)
	fresh.post(t, ingestToken, "{")
	if r := fresh.restore(t, ingestToken, data); r.status != http.StatusConflict {
		t.Errorf("restore into a store with a quarantined body: %d %s, want 409", r.status, r.body)
	}
}

// tempFiles lists what a backup or restore may leave in dir (the store's own files aside).
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "r.db.tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestBackupUnsupported: a PostgreSQL receiver points to pg_dump.
func TestBackupUnsupported(t *testing.T) {
	e := newEnv(t, "postgres", nil)
	if r := e.get(t, "/v1/backup"); r.status != http.StatusNotImplemented || r.code != "not_supported" {
		t.Errorf("backup of a PostgreSQL receiver: %d %s, want 501 not_supported", r.status, r.body)
	}
}

// TestBackupNoSpace: on a volume that cannot hold a copy of the store next to it (and keep the
// store's reserve), a backup is refused with 507 and the store keeps taking deliveries; so is a
// restore larger than a third of the free space.
func TestBackupNoSpace(t *testing.T) {
	dir := storetest.Tmpfs(t, 8<<20)
	e := &testEnv{kind: "sqlite", dir: t.TempDir(), sqlitePath: filepath.Join(dir, "r.db")}
	var err error
	e.st, err = sqlite.OpenWith(context.Background(), e.sqlitePath, sqlite.Options{MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.serve(t, nil)
	pad := strings.Repeat("x", 64<<10)
	for i := range 60 { // ~4 MiB
		body := strings.Replace(runBody(fmt.Sprint("big-", i), "jr-1", "list", "completed"), `{"n"`, `{"pad":"`+pad+`","n"`, 1)
		if r := e.post(t, ingestToken, body); r.status != http.StatusCreated {
			t.Fatalf("delivery %d: %d %s", i, r.status, r.body)
		}
	}
	r := e.get(t, "/v1/backup")
	if r.status != http.StatusInsufficientStorage || r.code != "insufficient_storage" {
		t.Fatalf("backup on a volume without room: %d %s, want 507 insufficient_storage", r.status, r.body)
	}
	if r := e.post(t, ingestToken, runBody("after-refusal", "jr-1", "list", "completed")); r.status != http.StatusCreated {
		t.Errorf("delivery after the refused backup: %d %s", r.status, r.body)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "r.db.tmp-*")); len(left) > 0 {
		t.Errorf("files left on the volume: %v", left)
	}

	empty := &testEnv{kind: "sqlite", dir: t.TempDir(), sqlitePath: filepath.Join(storetest.Tmpfs(t, 8<<20), "r.db")}
	if empty.st, err = sqlite.OpenWith(context.Background(), empty.sqlitePath, sqlite.Options{MinFreeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { empty.st.Close() })
	empty.serve(t, nil)
	if r := empty.restore(t, ingestToken, make([]byte, 3<<20)); r.status != http.StatusInsufficientStorage {
		t.Errorf("restore of 3 MiB onto 8 MiB: %d %s, want 507", r.status, r.body)
	}
}

// TestBackupWhileIngesting: a backup taken while senders keep delivering holds every delivery
// acknowledged before it was asked for, and no delivery is refused meanwhile.
func TestBackupWhileIngesting(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	load := startLoad(e, 8)
	eventually(t, "300 deliveries acknowledged", func() bool { return load.acked() >= 300 })
	before := load.ackedIDs()
	start := time.Now()
	data := e.takeBackup(t)
	took := time.Since(start)
	during := load.acked() - len(before)
	refused := load.stop()
	if refused != "" {
		t.Errorf("deliveries refused during the backup: %s", refused)
	}

	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range before {
		if _, err := st.Get(context.Background(), id); err != nil {
			t.Fatalf("delivery %s, acknowledged before the backup, is not in it: %v", id, err)
		}
	}
	t.Logf("backup of %d bytes in %v; %d deliveries were acknowledged meanwhile", len(data), took, during)
}

// load sends deliveries to a receiver from several goroutines until stopped.
type load struct {
	mu      sync.Mutex
	ids     []string // acknowledged with 201, in order
	refused []string
	done    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

func startLoad(e *testEnv, senders int) *load {
	l := &load{done: make(chan struct{})}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	for g := range senders {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.done:
					return
				default:
				}
				id := fmt.Sprintf("live-%d-%d", g, i)
				req, _ := http.NewRequest(http.MethodPost, e.url+"/webhooks/intuned", strings.NewReader(runBody(id, "jr-live", "list", "completed")))
				req.Header.Set("Authorization", "Bearer "+ingestToken)
				res, err := client.Do(req)
				l.mu.Lock()
				switch {
				case err != nil:
					l.refused = append(l.refused, err.Error())
				case res.StatusCode == http.StatusCreated:
					l.ids = append(l.ids, id)
				default:
					l.refused = append(l.refused, res.Status)
				}
				l.mu.Unlock()
				if res != nil {
					res.Body.Close()
				}
			}
		})
	}
	return l
}

func (l *load) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

func (l *load) ackedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// stop ends the load (once) and returns the refusals it saw, if any.
func (l *load) stop() string {
	l.stopped.Do(func() { close(l.done) })
	l.wg.Wait()
	if len(l.refused) == 0 {
		return ""
	}
	return fmt.Sprintf("%d, the first: %s", len(l.refused), l.refused[0])
}

// TestPostgresDumpRestore: a PostgreSQL receiver's database dumped with pg_dump and restored
// with pg_restore into another database serves the same read API answers, byte for byte, from a
// receiver pointed at it, which then stores on after the restored deliveries.
func TestPostgresDumpRestore(t *testing.T) {
	src := newEnv(t, "postgres", nil)
	fill(t, src)
	bin, err := pgtest.FindBinDir()
	if err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dump := filepath.Join(t.TempDir(), "receiver.dump")
	restoredDSN := pgtest.NewDatabase(t)
	for _, args := range [][]string{
		{filepath.Join(bin, "pg_dump"), "--format=custom", "--file=" + dump, "--dbname=" + src.pgDSN},
		{filepath.Join(bin, "pg_restore"), "--no-owner", "--exit-on-error", "--dbname=" + restoredDSN, dump},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(args[0]), err, out)
		}
	}
	dst := &testEnv{kind: "postgres", dir: t.TempDir(), pgDSN: restoredDSN}
	if dst.st, err = postgres.Open(context.Background(), restoredDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.st.Close() })
	dst.serve(t, nil)
	sameView(t, readView(t, src), readView(t, dst))
	storesAfterRestored(t, dst)
}
