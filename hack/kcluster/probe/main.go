// Command probe is a client Pod for the local test cluster's network tests:
// a test asks it, over HTTP, to fetch a URL from inside the cluster, and
// learns what a NetworkPolicy admits from the probe's namespace.
//
//	GET /get?url=U   fetch U (2 s timeout): 200 and U's status line, or 502 and the error
//
// It runs alone in a tiny image (test/cluster builds it), as any non-root Pod would.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := ":8080"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	http.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), http.MethodGet, r.URL.Query().Get("url"), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
		fmt.Fprintln(w, res.Status)
	})
	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	log.Fatal(http.ListenAndServe(addr, nil))
}
