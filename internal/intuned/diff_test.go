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

func TestParseTimeFormats(t *testing.T) {
	want := "2026-01-05T09:00:00.25Z"
	for _, s := range []string{
		"2026-01-05T09:00:00.250Z", "2026-01-05T09:00:00.25+00:00", "2026-01-05T10:00:00.25+01:00",
		"2026-01-05T09:00:00.25+0000", "2026-01-05 09:00:00.250000+00", "2026-01-05 09:00:00.25",
		"2026-01-05T09:00:00.250",
	} {
		got, ok := ParseTime(s)
		if !ok || got.Format("2006-01-02T15:04:05.999Z07:00") != want {
			t.Errorf("ParseTime(%q) = %v %v, want %s", s, got, ok, want)
		}
	}
	var tm Time
	if err := tm.UnmarshalJSON([]byte(`"next tuesday"`)); err != nil || !tm.IsZero() || tm.Raw != "next tuesday" {
		t.Errorf("an unknown format must read as zero without error: %+v %v", tm, err)
	}
}
