package intuned

import (
	"encoding/json"
	"fmt"
)

// Sink types on the wire.
const (
	SinkTypeWebhook = "webhook"
	SinkTypeS3      = "s3"
)

// Sink is where Intuned delivers each Run's result: a tagged union on "type".
// Exactly one of Webhook and S3 is set.
type Sink struct {
	Webhook *WebhookSink
	S3      *S3Sink
}

// WebhookSink POSTs one JSON body per Run to URL.
type WebhookSink struct {
	URL string `json:"url"`
	// Headers are sent with every POST (e.g. Authorization).
	Headers map[string]string `json:"headers,omitempty"`
	// SkipOnFail drops results of failed Runs (Intuned default false; always
	// present in responses).
	SkipOnFail *bool `json:"skipOnFail,omitempty"`
	// APIsToSend limits delivery to these API names (default: all).
	APIsToSend []string `json:"apisToSend,omitempty"`
	// Retry and Timeout (milliseconds) come from the webhook guide, which
	// documents them (defaults 3 and 5000) although the SDK schema lacks
	// them; they are passed through unchanged.
	Retry   *int `json:"retry,omitempty"`
	Timeout *int `json:"timeout,omitempty"`
}

// S3Sink writes Run results to an S3-compatible bucket.
type S3Sink struct {
	Bucket          string   `json:"bucket"`
	AccessKeyID     string   `json:"accessKeyId"`
	SecretAccessKey string   `json:"secretAccessKey"`
	Region          string   `json:"region"`
	Prefix          string   `json:"prefix,omitempty"`
	SkipOnFail      *bool    `json:"skipOnFail,omitempty"`
	APIsToSend      []string `json:"apisToSend,omitempty"`
	Endpoint        string   `json:"endpoint,omitempty"`
	ForcePathStyle  *bool    `json:"forcePathStyle,omitempty"`
}

// Type returns the sink's wire type, or "" when neither variant is set.
func (s Sink) Type() string {
	switch {
	case s.Webhook != nil:
		return SinkTypeWebhook
	case s.S3 != nil:
		return SinkTypeS3
	}
	return ""
}

// The tagged forms add "type" in front of each variant's own fields.
type taggedWebhook struct {
	Type string `json:"type"`
	*WebhookSink
}

type taggedS3 struct {
	Type string `json:"type"`
	*S3Sink
}

// MarshalJSON implements json.Marshaler.
func (s Sink) MarshalJSON() ([]byte, error) {
	switch {
	case s.Webhook != nil && s.S3 != nil:
		return nil, fmt.Errorf("intuned: sink has both webhook and s3 set")
	case s.Webhook != nil:
		return json.Marshal(taggedWebhook{SinkTypeWebhook, s.Webhook})
	case s.S3 != nil:
		return json.Marshal(taggedS3{SinkTypeS3, s.S3})
	}
	return nil, fmt.Errorf("intuned: sink has no variant set")
}

// UnmarshalJSON implements json.Unmarshaler.
func (s *Sink) UnmarshalJSON(b []byte) error {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	switch head.Type {
	case SinkTypeWebhook:
		var w WebhookSink
		if err := json.Unmarshal(b, &w); err != nil {
			return err
		}
		*s = Sink{Webhook: &w}
	case SinkTypeS3:
		var v S3Sink
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = Sink{S3: &v}
	default:
		return fmt.Errorf("intuned: unknown sink type %q", head.Type)
	}
	return nil
}
