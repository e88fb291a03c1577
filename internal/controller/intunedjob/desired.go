package intunedjob

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// This file is pure: it turns an IntunedJob spec plus the values read from
// the Secrets and the WebhookReceiver it references into the Job that should
// exist on Intuned. No I/O happens here, so it is easy to test and to read
// next to docs/intuned-api.md.

// resolvedRefs are the values the spec points at, read by the reconciler
// (see refs.go). Everything in here except ReceiverURL is secret.
type resolvedRefs struct {
	// Headers are the sink.webhook.headersFrom values by header name.
	Headers map[string]string
	// S3AccessKeyID and S3SecretAccessKey come from sink.s3.credentialsSecretRef.
	S3AccessKeyID, S3SecretAccessKey string
	// Proxy is the proxyFrom value.
	Proxy string
	// ReceiverURL and ReceiverToken come from sink.webhook.receiverRef (the
	// receiver's status.url and the "token" key of its token Secret).
	ReceiverURL, ReceiverToken string
	// ReceiverAPI is the receiver's read and backfill API inside the
	// cluster (its Service), and ReceiverReadToken the "read-token" key of
	// its token Secret: delivery accounting uses them.
	ReceiverAPI, ReceiverReadToken string
}

// desiredJob builds the Update Job body (the create body minus its id) for
// job. The create body is the same plus the id (see createRequest).
//
// Header precedence, lowest first: spec headers, headersFrom, then the
// receiver's Authorization header. The receiver's token must win: the
// receiver rejects every other value, so a user header would only break
// delivery (the CRD also refuses an Authorization header next to
// receiverRef; headersFrom cannot be checked there).
func desiredJob(job *intunedv1alpha1.IntunedJob, refs resolvedRefs) (intuned.UpdateJobRequest, error) {
	spec := &job.Spec
	var out intuned.UpdateJobRequest

	for i, p := range spec.Payload {
		item := intuned.PayloadItem{
			APIName:        p.APIName,
			Parameters:     json.RawMessage(`{}`),
			RequestTimeout: intPtr(p.RequestTimeout),
			Retry:          retryPolicy(p.Retry),
		}
		if p.Parameters != nil && len(bytes.TrimSpace(p.Parameters.Raw)) > 0 {
			if !isJSONObject(p.Parameters.Raw) {
				return out, fmt.Errorf("payload[%d].parameters must be a JSON object", i)
			}
			item.Parameters = json.RawMessage(p.Parameters.Raw)
		}
		out.Payload = append(out.Payload, item)
	}

	if c := spec.Configuration; c != nil {
		out.Configuration = intuned.Configuration{
			Retry:                 retryPolicy(c.Retry),
			MaxConcurrentRequests: floatPtr(c.MaxConcurrentRequests),
			RequestTimeout:        intPtr(c.RequestTimeout),
		}
	}

	if spec.Schedule != nil {
		out.Schedule = schedule(spec.Schedule)
	}

	if s := spec.Sink; s != nil {
		switch {
		case s.Webhook != nil:
			w := s.Webhook
			url := w.URL
			headers := map[string]string{}
			maps.Copy(headers, w.Headers)
			maps.Copy(headers, refs.Headers)
			if w.ReceiverRef != nil {
				url = refs.ReceiverURL
				for k := range headers {
					if strings.EqualFold(k, "Authorization") {
						delete(headers, k)
					}
				}
				headers["Authorization"] = "Bearer " + refs.ReceiverToken
			}
			if len(headers) == 0 {
				headers = nil
			}
			out.Sink = &intuned.Sink{Webhook: &intuned.WebhookSink{
				URL:        url,
				Headers:    headers,
				SkipOnFail: boolPtr(w.SkipOnFail),
				APIsToSend: nonEmpty(w.APIsToSend),
				Retry:      intPtr(w.Retry),
				Timeout:    intPtr(w.Timeout),
			}}
		case s.S3 != nil:
			v := s.S3
			out.Sink = &intuned.Sink{S3: &intuned.S3Sink{
				Bucket:          v.Bucket,
				AccessKeyID:     refs.S3AccessKeyID,
				SecretAccessKey: refs.S3SecretAccessKey,
				Region:          v.Region,
				Prefix:          v.Prefix,
				SkipOnFail:      boolPtr(v.SkipOnFail),
				APIsToSend:      nonEmpty(v.APIsToSend),
				Endpoint:        v.Endpoint,
				ForcePathStyle:  v.ForcePathStyle,
			}}
		}
	}

	switch {
	case spec.Proxy != "":
		out.Proxy = &spec.Proxy
	case spec.ProxyFrom != nil:
		p := refs.Proxy
		out.Proxy = &p
	}

	if a := spec.AuthSession; a != nil {
		out.AuthSession = &intuned.AuthSession{
			ID:             a.ID,
			CheckAttempts:  intPtr(a.CheckAttempts),
			CreateAttempts: intPtr(a.CreateAttempts),
		}
	}
	return out, nil
}

// createRequest is the Create Job body for the desired Job.
func createRequest(jobID string, d intuned.UpdateJobRequest) intuned.CreateJobRequest {
	return intuned.CreateJobRequest{
		ID:            jobID,
		Payload:       d.Payload,
		Configuration: d.Configuration,
		Schedule:      d.Schedule,
		Sink:          d.Sink,
		Proxy:         d.Proxy,
		AuthSession:   d.AuthSession,
	}
}

// inSync reports whether the Job observed on Intuned already is the desired
// one. Comparison happens after Intuned's documented defaults are applied on
// both sides (intuned.SameSpec), so values Intuned fills in by itself (request
// timeouts, retry attempts, skipOnFail) never cause an update, and an update
// that Intuned accepted is never repeated.
func inSync(desired intuned.UpdateJobRequest, observed *intuned.Job) bool {
	return intuned.SameSpec(desired, observed.Spec())
}

// schedule converts the CRD schedule into Intuned's union-typed form. Every
// calendar field is sent as a list of range objects, one stable shape, so the
// Job read back compares equal to the one sent.
func schedule(s *intunedv1alpha1.JobSchedule) *intuned.Schedule {
	out := &intuned.Schedule{}
	if s.Jitter != "" {
		j := msValue(s.Jitter)
		out.Jitter = &j
	}
	for _, iv := range s.Intervals {
		out.Intervals = append(out.Intervals, intuned.Interval{Every: msValue(iv.Every)})
	}
	for _, c := range s.Calendars {
		out.Calendars = append(out.Calendars, intuned.Calendar{
			Second:     calendarField(c.Second, numRange),
			Minute:     calendarField(c.Minute, numRange),
			Hour:       calendarField(c.Hour, numRange),
			DayOfMonth: calendarField(c.DayOfMonth, numRange),
			Year:       calendarField(c.Year, numRange),
			DayOfWeek:  calendarField(c.DayOfWeek, dayRange),
			Month:      calendarField(c.Month, monthRange),
			Comment:    c.Comment,
		})
	}
	return out
}

// msValue sends digits as a number of milliseconds and anything else ("1h")
// as Intuned's ms-style string.
func msValue(v string) intuned.NumOrString {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return intuned.Num(n)
	}
	return intuned.Str(v)
}

// calendarField sends one calendar field as a list of range objects.
func calendarField[R any](rs []R, toRange func(R) *intuned.CalendarRange) *intuned.CalendarField {
	if len(rs) == 0 {
		return nil
	}
	f := &intuned.CalendarField{List: true}
	for _, r := range rs {
		f.Items = append(f.Items, intuned.CalendarItem{Range: toRange(r)})
	}
	return f
}

func numRange(r intunedv1alpha1.CalendarRange) *intuned.CalendarRange {
	cr := &intuned.CalendarRange{Start: intuned.Num(int64(r.Start)), Step: stepValue(r.Step)}
	if r.End != nil {
		e := intuned.Num(int64(*r.End))
		cr.End = &e
	}
	return cr
}

// namedRange is a range of day or month names.
func namedRange(start, end string, step *int32) *intuned.CalendarRange {
	cr := &intuned.CalendarRange{Start: intuned.Str(start), Step: stepValue(step)}
	if end != "" {
		e := intuned.Str(end)
		cr.End = &e
	}
	return cr
}

func dayRange(r intunedv1alpha1.DayOfWeekRange) *intuned.CalendarRange {
	return namedRange(string(r.Start), string(r.End), r.Step)
}

func monthRange(r intunedv1alpha1.MonthRange) *intuned.CalendarRange {
	return namedRange(string(r.Start), string(r.End), r.Step)
}

func stepValue(step *int32) *intuned.NumOrString {
	if step == nil {
		return nil
	}
	st := intuned.Num(int64(*step))
	return &st
}

func retryPolicy(r *intunedv1alpha1.RetryPolicy) *intuned.RetryPolicy {
	if r == nil {
		return nil
	}
	return &intuned.RetryPolicy{MaximumAttempts: intPtr(r.MaximumAttempts)}
}

func intPtr(v *int32) *int {
	if v == nil {
		return nil
	}
	i := int(*v)
	return &i
}

func floatPtr(v *int32) *float64 {
	if v == nil {
		return nil
	}
	f := float64(*v)
	return &f
}

func boolPtr(v bool) *bool { return &v }

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func isJSONObject(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}
