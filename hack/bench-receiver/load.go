package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wrkResult is one wrk run, as its Lua done() hook reports it.
type wrkResult struct {
	requests, errors int
	seconds          float64
	p50, p99, p999   time.Duration
	clientCPU        time.Duration
}

// wrkScript is the Lua script wrk runs: every request carries a fresh runId (the run's prefix, the
// wrk thread and a counter, or 62 random bits with randomIDs), so the receivers store each one.
// Its arguments (after wrk's --) are the runId prefix and optionally the ingest path, the bearer
// token and a Host header (the -ingress cases reach Pods through Traefik by host name).
// done() prints one line for runWrk.
func wrkScript(bodySize int, randomIDs bool) string {
	pre, suf := bodyParts(bodySize)
	id := `tid .. "-" .. counter`
	if randomIDs {
		id = `string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))`
	}
	return `local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(os.time() * 1000 + tid)
  prefix = args[1] or "r"
  path = args[2] or "/webhooks/intuned"
  pre = ` + luaString(string(pre)) + `
  suf = ` + luaString(string(suf)) + `
  headers = {["Authorization"] = "Bearer " .. (args[3] or "bench-token"), ["Content-Type"] = "application/json"}
  if args[4] then headers["Host"] = args[4] end
end
function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, pre .. prefix .. "-" .. ` + id + ` .. suf)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d errors=%d duration_us=%d p50=%d p99=%d p999=%d\n",
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`
}

func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		if c == '"' || c == '\\' || c < 0x20 || c > 0x7e {
			fmt.Fprintf(&b, "\\%03d", c) // three digits: a digit may follow
		} else {
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// runWrk runs wrk with conns connections against base for d (whole seconds, at least 1) and
// parses its done() line. luaArgs go to the script (wrkScript): the runId prefix first.
func (b *bench) runWrk(base string, conns int, d time.Duration, luaArgs ...string) (wrkResult, error) {
	secs := max(1, int(d.Round(time.Second).Seconds()))
	args := append([]string{"-t", strconv.Itoa(min(b.wrkThreads, conns)), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs) + "s",
		"--timeout", "30s", "-s", filepath.Join(b.tmp, "ingest.lua"), base, "--"}, luaArgs...)
	cmd := exec.Command("wrk", args...)
	if b.wrkCommand != nil {
		cmd = b.wrkCommand(args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out.String())
	}
	var w wrkResult
	for _, line := range strings.Split(out.String(), "\n") {
		rest, ok := strings.CutPrefix(line, "BENCH ")
		if !ok {
			continue
		}
		var us, p50, p99, p999 int64
		if _, err := fmt.Sscanf(rest, "requests=%d errors=%d duration_us=%d p50=%d p99=%d p999=%d",
			&w.requests, &w.errors, &us, &p50, &p99, &p999); err != nil {
			return wrkResult{}, fmt.Errorf("wrk output %q: %v", line, err)
		}
		w.seconds = float64(us) / 1e6
		w.p50, w.p99, w.p999 = time.Duration(p50)*time.Microsecond, time.Duration(p99)*time.Microsecond, time.Duration(p999)*time.Microsecond
		w.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return w, nil
	}
	return wrkResult{}, fmt.Errorf("wrk printed no result:\n%s", out.String())
}

// target is where and how requests go; the zero value is a local case (-ingress cases set it).
type target struct {
	path, token, host string
}

// head is the start of a fixed-rate request, up to its Content-Length.
func (t target) head() string {
	path, token, host := cmp.Or(t.path, "/webhooks/intuned"), cmp.Or(t.token, "bench-token"), cmp.Or(t.host, "bench")
	return "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\n"
}

// fixedResult is the fixed-rate (open-loop) phase of one case.
type fixedResult struct {
	lat     []time.Duration // 2xx answers, from the scheduled send time
	sent    int
	errors  int
	seconds float64
	cpu     time.Duration
	pruned  float64 // deliveries retention deleted (+prune cases)
}

// fixedRate offers rate req/s to s for d, open loop: request i is due at start + i/rate and goes
// out on connection i mod conns then, or as soon as that connection has its previous answer. Its
// latency counts from when it was due, so queueing behind a stall is measured (no coordinated
// omission). The client speaks HTTP/1.1 on raw keep-alive connections with pre-built requests: the
// Go HTTP client cost about 50 us of the shared CPUs per request and could not offer more than
// ~12k req/s here.
func (b *bench) fixedRate(base string, f *fixedResult, prefix string, rate float64, d time.Duration) {
	addr := strings.TrimPrefix(base, "http://")
	pre, suf := bodyParts(b.bodySize)
	head := b.target.head()
	n := int(rate * d.Seconds())
	conns := b.conns
	start := time.Now().Add(50 * time.Millisecond) // time to dial
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs := 0
			defer func() {
				mu.Lock()
				f.lat = append(f.lat, lat...)
				f.errors += errs
				mu.Unlock()
			}()
			var conn net.Conn
			var rd *bufio.Reader
			var req []byte
			for i := c; i < n; i += conns {
				due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				if conn == nil {
					var err error
					if conn, err = net.Dial("tcp", addr); err != nil {
						errs++
						continue
					}
					rd = bufio.NewReaderSize(conn, 4096)
				}
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				id := prefix + "-" + b.runID(i)
				req = append(append(req[:0], head...), "Content-Length: "...)
				req = strconv.AppendInt(req, int64(len(pre)+len(id)+len(suf)), 10)
				req = append(append(append(append(req, "\r\n\r\n"...), pre...), id...), suf...)
				status, err := roundTrip(conn, rd, req)
				if err != nil {
					conn.Close()
					conn = nil
					errs++
					continue
				}
				if status/100 != 2 {
					errs++
					continue
				}
				lat = append(lat, time.Since(due))
			}
			if conn != nil {
				conn.Close()
			}
		}()
	}
	wg.Wait()
	f.sent += n
	f.seconds += time.Since(start).Seconds()
}

// roundTrip writes one HTTP/1.1 request and reads its answer (status line, headers with a
// Content-Length, body), returning the status code.
func roundTrip(conn net.Conn, rd *bufio.Reader, req []byte) (int, error) {
	conn.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
	if _, err := conn.Write(req); err != nil {
		return 0, err
	}
	line, err := rd.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, err
	}
	length := -1
	for {
		h, err := rd.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, err
			}
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	if _, err := rd.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}
