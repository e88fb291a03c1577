package receiver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest opens a connection to e and writes an ingest request's head.
func rawRequest(t *testing.T, e *testEnv, headers string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /webhooks/intuned HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n%s\r\n", ingestToken, headers)
	return conn
}

// TestStalledSendersDoNotStarveOthers: senders that declare large bodies and then stall hold only
// the bytes they sent, not their Content-Length, so other deliveries still get in.
func TestStalledSendersDoNotStarveOthers(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config) { c.MaxInFlightBytes = 2 << 20 })
	const stalled = 2 // together they declare the whole budget
	for range stalled {
		conn := rawRequest(t, e, fmt.Sprintf("Content-Length: %d\r\n", 1<<20))
		io.WriteString(conn, `{"workspaceId":"w","pad":"`) //nolint:errcheck // then nothing more
	}
	eventually(t, "stalled senders in flight", func() bool { return e.rcv.inFlight.Load() == stalled })
	for i := range 3 {
		if r := e.post(t, ingestToken, validBody(fmt.Sprint("beside-stalled-", i))); r.status != http.StatusCreated {
			t.Fatalf("delivery %d beside %d stalled senders: %d %s, want 201", i, stalled, r.status, r.body)
		}
	}
	if held := e.rcv.inFlightBytes.Load(); held > 256<<10 {
		t.Errorf("stalled senders hold %d bytes of the in-flight budget", held)
	}
}

// TestOversizedBodyAnswered413: a client that writes its whole body before reading the answer
// (as Python's urllib does) reads 413, not a connection reset.
func TestOversizedBodyAnswered413(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config) { c.MaxBodyBytes = 1 << 20 })
	body := validBody("huge") + strings.Repeat(" ", 8<<20)
	chunked := func() string {
		var b strings.Builder
		for rest := body; rest != ""; {
			n := min(len(rest), 64<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		return b.String() + "0\r\n\r\n"
	}
	for _, c := range []struct{ name, headers, payload string }{
		{"Content-Length", fmt.Sprintf("Content-Length: %d\r\n", len(body)), body},
		{"chunked", "Transfer-Encoding: chunked\r\n", chunked()},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := rawRequest(t, e, c.headers)
			conn.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
			if _, err := io.WriteString(conn, c.payload); err != nil {
				t.Fatalf("writing the body: %v (the receiver closed the connection before reading it)", err)
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "too_large") {
				t.Fatalf("got %d %s, want 413 too_large", res.StatusCode, b)
			}
		})
	}
	if r := e.post(t, ingestToken, validBody("ok-after")); r.status != http.StatusCreated {
		t.Fatalf("after oversized bodies: %d", r.status)
	}
}
