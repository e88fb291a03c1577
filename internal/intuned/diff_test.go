package intuned

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestSpecDiffAndDigest(t *testing.T) {
	base := func() UpdateJobRequest {
		return UpdateJobRequest{
			Payload:       []PayloadItem{{APIName: "list", Parameters: json.RawMessage(`{"a":1}`)}},
			Configuration: Configuration{RequestTimeout: ptrTo(600)},
			Sink:          &Sink{Webhook: &WebhookSink{URL: "https://h.example", Headers: map[string]string{"Authorization": "Bearer secret-1"}}},
		}
	}
	tests := []struct {
		name   string
		mutate func(*UpdateJobRequest)
		want   []string
	}{
		{"same", func(*UpdateJobRequest) {}, nil},
		{"defaults are not a difference", func(r *UpdateJobRequest) { r.Configuration.RequestTimeout = nil }, nil},
		{"rounded timeout", func(r *UpdateJobRequest) { r.Configuration.RequestTimeout = ptrTo(300) }, []string{"configuration.requestTimeout"}},
		{"header value: the path, never the value", func(r *UpdateJobRequest) { r.Sink.Webhook.Headers["Authorization"] = "Bearer secret-2" }, []string{"sink.headers"}},
		{"parameters", func(r *UpdateJobRequest) { r.Payload[0].Parameters = json.RawMessage(`{"a":2}`) }, []string{"payload[0].parameters"}},
		{"stripped auth session", func(r *UpdateJobRequest) { r.AuthSession = &AuthSession{ID: "s1"} }, []string{"auth_session"}},
	}
	const key = "api-key"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			observed := base()
			tc.mutate(&observed)
			got := SpecDiff(base(), observed)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("SpecDiff = %v, want %v", got, tc.want)
			}
			if same := SpecDigest(key, base()) == SpecDigest(key, observed); same != (len(tc.want) == 0) {
				t.Fatalf("digests equal = %v, want %v", same, len(tc.want) == 0)
			}
			if SameSpec(base(), observed) != (len(tc.want) == 0) {
				t.Fatalf("SameSpec disagrees with SpecDiff")
			}
		})
	}
	if SpecDigest("k1", base()) == SpecDigest("k2", base()) {
		t.Fatal("digest does not depend on the key: a secret in the spec could be guessed from it")
	}
}
