package intuned_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// Example shows how the manager wires a client: one Metrics set and the
// process-wide Pacer shared by every client, one client per credentials
// Secret, and the error helpers the controller branches on.
func Example() {
	// A stand-in for Intuned (or intuned-sim) that knows no Jobs.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"code":"not-found","category":"user","message":"Job not found","retirable":false,"correlationId":"c1"}`)
	}))
	defer srv.Close()

	metrics, err := intuned.NewMetrics(prometheus.NewRegistry()) // the manager passes metrics.Registry
	if err != nil {
		panic(err)
	}
	client, err := intuned.New(intuned.Options{
		BaseURL:     srv.URL + "/api/v1/workspace", // default: intuned.DefaultBaseURL
		WorkspaceID: "0b6f3c2a-1d4e-4f5a-8b9c-7d6e5f4a3b21",
		APIKey:      "from-the-secret",
		Metrics:     metrics,
		// Pacer: nil means intuned.DefaultPacer(), shared process-wide.
	})
	if err != nil {
		panic(err)
	}

	var api intuned.API = client // the controller depends on the interface
	ctx := context.Background()
	_, err = api.GetJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook")
	switch {
	case intuned.IsNotFound(err):
		fmt.Println("not on Intuned yet: create it")
		req := intuned.CreateJobRequest{
			ID:            "default-with-webhook",
			Payload:       []intuned.PayloadItem{{APIName: "list", Parameters: json.RawMessage(`{}`)}},
			Configuration: intuned.Configuration{},
			Sink: &intuned.Sink{Webhook: &intuned.WebhookSink{
				URL:     "https://receiver.example.com/webhooks/intuned",
				Headers: map[string]string{"Authorization": "Bearer token"},
			}},
		}
		body, _ := json.Marshal(req)
		fmt.Println(string(body))
	case err != nil:
		fmt.Println("error:", err)
	}
	// Output:
	// not on Intuned yet: create it
	// {"id":"default-with-webhook","payload":[{"apiName":"list","parameters":{}}],"configuration":{},"sink":{"type":"webhook","url":"https://receiver.example.com/webhooks/intuned","headers":{"Authorization":"Bearer token"}}}
}
