package intunedsim_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// A test starts the simulator in-process on a fake clock, creates the
// quickstart job over HTTP, triggers it and reads the delivery log.
func Example() {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()

	clock := intunedsim.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	sim, _ := intunedsim.New(intunedsim.Options{Clock: clock, Seed: 1, RateLimit: intunedsim.RateLimitOff})
	defer sim.Close()
	srv := httptest.NewServer(sim)
	defer srv.Close()

	jobs := srv.URL + intunedsim.APIPrefix + "/" + intunedsim.DefaultWorkspaceID + "/projects/ecommerce-scraper-quickstart/jobs"
	post := func(url, body string) string {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("x-api-key", intunedsim.DefaultAPIKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprint(res.StatusCode, " ", string(b))
	}
	fmt.Println(post(jobs, `{"id":"default-with-webhook","payload":[{"apiName":"list","parameters":{}}],
		"configuration":{},"sink":{"type":"webhook","url":"`+hook.URL+`"}}`))
	post(jobs+"/default-with-webhook/trigger", "")
	_ = sim.WaitIdle(context.Background())

	apis := map[string]int{}
	for _, d := range sim.Deliveries() {
		apis[d.APIName+" "+d.Outcome]++
	}
	fmt.Println(apis)
	fmt.Println("writes:", sim.WriteCalls())
	// Output:
	// 201 {"id":"default-with-webhook","message":"created"}
	// map[details delivered:5 list delivered:1]
	// writes: 2
}
