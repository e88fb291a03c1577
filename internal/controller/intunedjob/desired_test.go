package intunedjob

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

func desiredTestJob(mutate func(*intunedv1alpha1.IntunedJob)) *intunedv1alpha1.IntunedJob {
	j := &intunedv1alpha1.IntunedJob{
		ObjectMeta: metav1.ObjectMeta{Name: "desired-job", Namespace: "ns"},
		Spec: intunedv1alpha1.IntunedJobSpec{
			Project: "p",
			Payload: []intunedv1alpha1.JobPayload{{APIName: "list"}},
		},
	}
	if mutate != nil {
		mutate(j)
	}
	return j
}

// TestIntunedJobDesiredWire: the spec becomes exactly the documented wire
// body (docs/intuned-api.md, "Operations").
func TestIntunedJobDesiredWire(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*intunedv1alpha1.IntunedJob)
		refs   resolvedRefs
		want   string
	}{
		{"minimal", nil, resolvedRefs{},
			`{"payload":[{"apiName":"list","parameters":{}}],"configuration":{},"schedule":null,"sink":null,"proxy":null,"auth_session":null}`},
		{"schedule", func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.Schedule = &intunedv1alpha1.JobSchedule{
				Jitter:    "60000",
				Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "1h"}},
				Calendars: []intunedv1alpha1.ScheduleCalendar{{
					Minute:    []intunedv1alpha1.CalendarRange{{Start: 0, End: int32p(59), Step: int32p(15)}},
					DayOfWeek: []intunedv1alpha1.DayOfWeekRange{{Start: "MONDAY", End: "FRIDAY"}},
					Month:     []intunedv1alpha1.MonthRange{{Start: "JANUARY"}},
				}},
			}
		}, resolvedRefs{},
			`{"payload":[{"apiName":"list","parameters":{}}],"configuration":{},"schedule":{"jitter":60000,"intervals":[{"every":"1h"}],"calendars":[{"minute":[{"start":0,"end":59,"step":15}],"dayOfWeek":[{"start":"MONDAY","end":"FRIDAY"}],"month":[{"start":"JANUARY"}]}]},"sink":null,"proxy":null,"auth_session":null}`},
		{"receiver wins Authorization", func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.Sink = &intunedv1alpha1.JobSink{Webhook: &intunedv1alpha1.WebhookSink{
				ReceiverRef: &intunedv1alpha1.LocalObjectReference{Name: "r"},
				Headers:     map[string]string{"X-A": "a"},
				HeadersFrom: []intunedv1alpha1.HeaderFromSecret{{Name: "authorization"}},
			}}
		}, resolvedRefs{Headers: map[string]string{"authorization": "user"}, ReceiverURL: "https://r.example.com/x", ReceiverToken: "tok"},
			`{"payload":[{"apiName":"list","parameters":{}}],"configuration":{},"schedule":null,"sink":{"type":"webhook","url":"https://r.example.com/x","headers":{"Authorization":"Bearer tok","X-A":"a"},"skipOnFail":false},"proxy":null,"auth_session":null}`},
		{"s3 and proxyFrom and auth session", func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.Payload[0].Parameters = &apiextensionsv1.JSON{Raw: []byte(`{"n":1}`)}
			j.Spec.Payload[0].RequestTimeout = int32p(30)
			j.Spec.Sink = &intunedv1alpha1.JobSink{S3: &intunedv1alpha1.S3Sink{Bucket: "b", Region: "auto", Prefix: "x/"}}
			j.Spec.ProxyFrom = &intunedv1alpha1.SecretKeyRef{Name: "p", Key: "url"}
			j.Spec.AuthSession = &intunedv1alpha1.JobAuthSession{ID: "sess", CheckAttempts: int32p(2)}
		}, resolvedRefs{S3AccessKeyID: "AK", S3SecretAccessKey: "SK", Proxy: "http://u:p@proxy:8080"},
			`{"payload":[{"apiName":"list","parameters":{"n":1},"requestTimeout":30}],"configuration":{},"schedule":null,"sink":{"type":"s3","bucket":"b","accessKeyId":"AK","secretAccessKey":"SK","region":"auto","prefix":"x/","skipOnFail":false},"proxy":"http://u:p@proxy:8080","auth_session":{"id":"sess","checkAttempts":2}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := desiredJob(desiredTestJob(tc.mutate), tc.refs)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(d)
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestIntunedJobDesiredNormalisation: what Intuned fills in by itself
// (defaults, echoed skipOnFail, re-encoded parameters) never looks like a
// difference, while real differences do.
func TestIntunedJobDesiredNormalisation(t *testing.T) {
	job := desiredTestJob(func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Payload[0].Parameters = &apiextensionsv1.JSON{Raw: []byte(`{"a": 1, "b": [1,2]}`)}
		j.Spec.Configuration = &intunedv1alpha1.JobConfiguration{RequestTimeout: int32p(600), Retry: &intunedv1alpha1.RetryPolicy{}}
		j.Spec.Sink = &intunedv1alpha1.JobSink{Webhook: &intunedv1alpha1.WebhookSink{URL: "https://h.example.com", Retry: int32p(3), Timeout: int32p(5000)}}
	})
	d, err := desiredJob(job, resolvedRefs{})
	if err != nil {
		t.Fatal(err)
	}
	// What Intuned returns: defaults filled, parameters re-encoded, no retry/timeout echo.
	observed := `{"id":"desired-job","configuration":{"retry":{"maximumAttempts":3},"requestTimeout":600},
		"payload":[{"apiName":"list","parameters":{"b":[1,2],"a":1},"requestTimeout":600}],
		"sink":{"type":"webhook","url":"https://h.example.com","skipOnFail":false},
		"schedule":null,"created_at":"2026-01-01T00:00:00Z","state":"ACTIVE","projectId":"x","auth_session":null}`
	var o intuned.Job
	if err := json.Unmarshal([]byte(observed), &o); err != nil {
		t.Fatal(err)
	}
	if !inSync(d, &o) {
		t.Error("defaults filled in by Intuned look like drift")
	}
	o.Sink.Webhook.URL = "https://other.example.com"
	if inSync(d, &o) {
		t.Error("a changed URL is not seen as drift")
	}
}

func TestIntunedJobNextPoll(t *testing.T) {
	r := &Reconciler{}
	j := desiredTestJob(func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.PollInterval = &metav1.Duration{Duration: 10 * time.Minute}
	})
	if got := r.nextPoll(j); got != 10*time.Minute {
		t.Errorf("idle poll %s", got)
	}
	j.Status.LastJobRun = &intunedv1alpha1.JobRunSummary{ID: "x", Status: "PENDING"}
	if got := r.nextPoll(j); got != activeRunPoll {
		t.Errorf("active-run poll %s", got)
	}
	j.Status.LastTriggerTime = &metav1.Time{Time: time.Now()} // claimed, no JobRun id: pending
	if got := r.nextPoll(j); got != triggerVerifyDelay {
		t.Errorf("pending-trigger poll %s", got)
	}
}

// TestIntunedJobBackoffJitter: back-off is spread but never shorter than
// asked; after a Retry-After the spread is small.
func TestIntunedJobBackoffJitter(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, time.Second, time.Minute} {
		for range 100 {
			if j := jitter(d); j < d || j > d+d/5 {
				t.Fatalf("jitter(%s) = %s", d, j)
			}
			if a := report.AfterRetryAfter(d); a < d || a > d+min(d/20, 2*time.Second) {
				t.Fatalf("report.AfterRetryAfter(%s) = %s", d, a)
			}
		}
	}
}
