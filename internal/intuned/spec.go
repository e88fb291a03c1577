package intuned

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// Intuned's documented defaults, filled by the server (and the official SDKs)
// when a field is omitted.
const (
	DefaultRequestTimeout  = 600 // seconds, payload items and configuration
	DefaultMaximumAttempts = 3   // retry.maximumAttempts, when a retry object is given
	DefaultAuthAttempts    = 3   // auth_session checkAttempts and createAttempts
)

// Spec returns the user-settable part of an observed Job in request form, so
// it can be compared with the desired UpdateJobRequest (see SameSpec).
func (j *Job) Spec() UpdateJobRequest {
	return UpdateJobRequest{
		Payload:       j.Payload,
		Configuration: j.Configuration,
		Schedule:      j.Schedule,
		Sink:          j.Sink,
		Proxy:         j.Proxy,
		AuthSession:   j.AuthSession,
	}
}

// Spec is Job.Spec for the list shape, whose proxy is an object ({version,
// url}); only the URL is user-settable. Get Job documents payload as
// optional while the list item always has it, so this is the fallback when a
// detail answer lacks the payload.
func (j *JobListItem) Spec() UpdateJobRequest {
	var proxy *string
	if j.Proxy != nil {
		proxy = ptrTo(j.Proxy.URL)
	}
	return UpdateJobRequest{
		Payload:       j.Payload,
		Configuration: j.Configuration,
		Schedule:      j.Schedule,
		Sink:          j.Sink,
		Proxy:         proxy,
		AuthSession:   j.AuthSession,
	}
}

// Spec returns the create request without its id.
func (r CreateJobRequest) Spec() UpdateJobRequest {
	return UpdateJobRequest{
		Payload:       r.Payload,
		Configuration: r.Configuration,
		Schedule:      r.Schedule,
		Sink:          r.Sink,
		Proxy:         r.Proxy,
		AuthSession:   r.AuthSession,
	}
}

// WithDefaults returns a copy of s with Intuned's documented defaults filled
// in where s leaves them unset. s is not modified.
func WithDefaults(s UpdateJobRequest) UpdateJobRequest {
	s, ok := deepCopy(s)
	if !ok {
		return s // not encodable (an empty Sink): Intuned would reject it anyway
	}
	for i := range s.Payload {
		p := &s.Payload[i]
		if p.RequestTimeout == nil {
			p.RequestTimeout = ptrTo(DefaultRequestTimeout)
		}
		defaultRetry(p.Retry)
		if len(bytes.TrimSpace(p.Parameters)) == 0 {
			p.Parameters = json.RawMessage(`{}`)
		}
	}
	if s.Configuration.RequestTimeout == nil {
		s.Configuration.RequestTimeout = ptrTo(DefaultRequestTimeout)
	}
	defaultRetry(s.Configuration.Retry)
	if a := s.AuthSession; a != nil {
		if a.CheckAttempts == nil {
			a.CheckAttempts = ptrTo(DefaultAuthAttempts)
		}
		if a.CreateAttempts == nil {
			a.CreateAttempts = ptrTo(DefaultAuthAttempts)
		}
	}
	if s.Sink != nil {
		switch {
		case s.Sink.Webhook != nil && s.Sink.Webhook.SkipOnFail == nil:
			s.Sink.Webhook.SkipOnFail = ptrTo(false)
		case s.Sink.S3 != nil && s.Sink.S3.SkipOnFail == nil:
			s.Sink.S3.SkipOnFail = ptrTo(false)
		}
	}
	return s
}

// SameSpec reports whether the desired Job and the observed one are the same
// once Intuned's defaults are applied to both: the controller updates only
// when this is false. Empty and absent lists, maps and nulls compare equal,
// and JSON parameters compare by value, not by formatting.
//
// The webhook sink's retry and timeout come from the webhook guide but not
// from the API schema, so Intuned may not echo them back; they are compared
// only when the observed sink carries them.
func SameSpec(desired, observed UpdateJobRequest) bool {
	dv, ov, err := comparable(desired, observed)
	return err == nil && reflect.DeepEqual(dv, ov)
}

func webhook(s UpdateJobRequest) *WebhookSink {
	if s.Sink == nil {
		return nil
	}
	return s.Sink.Webhook
}

// genericJSON encodes v and decodes it generically, without null members.
func genericJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var g any
	if err := dec.Decode(&g); err != nil {
		return nil, err
	}
	return dropNulls(g), nil
}

func dropNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
			} else {
				x[k] = dropNulls(e)
			}
		}
	case []any:
		for i := range x {
			x[i] = dropNulls(x[i])
		}
	}
	return v
}

func defaultRetry(r *RetryPolicy) {
	if r != nil && r.MaximumAttempts == nil {
		r.MaximumAttempts = ptrTo(DefaultMaximumAttempts)
	}
}

// deepCopy copies s through its own JSON encoding, which the wire types are
// built to survive; ok is false when s cannot be encoded.
func deepCopy(s UpdateJobRequest) (c UpdateJobRequest, ok bool) {
	b, err := json.Marshal(s)
	if err != nil {
		return s, false
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return s, false
	}
	return c, true
}

func ptrTo[T any](v T) *T { return &v }
