package intunedsim

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseMS(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{`3600000`, time.Hour, true},
		{`"1h"`, time.Hour, true},
		{`"30m"`, 30 * time.Minute, true},
		{`"10s"`, 10 * time.Second, true},
		{`"2d"`, 48 * time.Hour, true},
		{`"1.5h"`, 90 * time.Minute, true},
		{`"2 days"`, 48 * time.Hour, true},
		{`"5 minutes"`, 5 * time.Minute, true},
		{`"1w"`, 7 * 24 * time.Hour, true},
		{`"500ms"`, 500 * time.Millisecond, true},
		{`"1500"`, 1500 * time.Millisecond, true},
		{`"6H"`, 6 * time.Hour, true},
		{`0`, 0, false},
		{`-5`, 0, false},
		{`"-1h"`, 0, false},
		{`"soon"`, 0, false},
		{`"1 fortnight"`, 0, false},
		{`true`, 0, false},
		{`null`, 0, false},
		{`{}`, 0, false},
		{`2.5`, 0, false}, // the SDK's schema says int
		{`1e3`, time.Second, true},
	}
	for _, c := range cases {
		got, err := parseMS(json.RawMessage(c.in), false)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseMS(%s) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
	// Jitter may be 0 (no jitter); every may not.
	if d, err := parseMS(json.RawMessage(`0`), true); err != nil || d != 0 {
		t.Errorf("jitter 0: %v %v", d, err)
	}
}

func TestCalendarNext(t *testing.T) {
	mon := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC) // Monday 09:00
	cases := []struct {
		name string
		cal  string
		from time.Time
		want []string // successive fire times
	}{
		{"empty = daily at midnight", `{}`, mon, []string{"2026-01-06T00:00:00Z", "2026-01-07T00:00:00Z"}},
		{"weekdays 12:51 (Intuned CLI example)", `{"hour":12,"minute":51,"dayOfWeek":["MONDAY","TUESDAY","WEDNESDAY","THURSDAY","FRIDAY"]}`,
			time.Date(2026, 1, 9, 13, 0, 0, 0, time.UTC), []string{"2026-01-12T12:51:00Z", "2026-01-13T12:51:00Z"}},
		{"every 15 minutes", `{"minute":{"start":0,"end":59,"step":15},"hour":"*"}`, mon,
			[]string{"2026-01-05T09:15:00Z", "2026-01-05T09:30:00Z", "2026-01-05T09:45:00Z", "2026-01-05T10:00:00Z"}},
		{"every second", `{"second":"*","minute":"*","hour":"*"}`, mon, []string{"2026-01-05T09:00:01Z", "2026-01-05T09:00:02Z"}},
		{"range without end = single value", `{"hour":{"start":7}}`, mon, []string{"2026-01-06T07:00:00Z"}},
		{"months by name", `{"dayOfMonth":1,"month":["MARCH",{"start":"JUNE","end":"JULY"}]}`, mon,
			[]string{"2026-03-01T00:00:00Z", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z", "2027-03-01T00:00:00Z"}},
		{"31st skips short months", `{"dayOfMonth":31,"hour":6}`, time.Date(2026, 1, 31, 7, 0, 0, 0, time.UTC),
			[]string{"2026-03-31T06:00:00Z", "2026-05-31T06:00:00Z"}},
		{"weekend range", `{"dayOfWeek":{"start":"SATURDAY","end":"SATURDAY"},"hour":[8,20]}`, mon,
			[]string{"2026-01-10T08:00:00Z", "2026-01-10T20:00:00Z", "2026-01-17T08:00:00Z"}},
		{"year bound", `{"year":2027,"month":"FEBRUARY","dayOfMonth":29}`, mon, nil}, // 2027 is not a leap year
		{"leap day", `{"month":"FEBRUARY","dayOfMonth":29}`, mon, []string{"2028-02-29T00:00:00Z"}},
		{"empty list matches nothing (the SDK accepts it)", `{"hour":[]}`, mon, nil},
		{"empty year list matches nothing", `{"year":[]}`, mon, nil},
		{"day of month AND day of week", `{"dayOfMonth":13,"dayOfWeek":"FRIDAY"}`, mon, []string{"2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z", "2026-11-13T00:00:00Z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cw calendarWire
			if err := json.Unmarshal([]byte(c.cal), &cw); err != nil {
				t.Fatal(err)
			}
			spec, err := compileCalendar(cw)
			if err != nil {
				t.Fatal(err)
			}
			at := c.from
			for i, w := range c.want {
				next, ok := spec.next(at)
				if !ok || next.Format(time.RFC3339) != w {
					t.Fatalf("fire %d: got %v %v, want %s", i, next, ok, w)
				}
				at = next
			}
			if c.want == nil {
				if next, ok := spec.next(at); ok {
					t.Fatalf("want no fire time, got %v", next)
				}
			}
		})
	}
}

func TestIntervalNextIsEpochAligned(t *testing.T) {
	cs, errs := compileSchedule(&scheduleWire{Intervals: []intervalWire{{Every: json.RawMessage(`"1h"`)}, {Every: json.RawMessage(`1500000`)}}})
	if errs != nil {
		t.Fatal(errs)
	}
	// 25-minute interval: multiples of 25m since the epoch; 09:00 UTC on
	// 2026-01-05 is 35,436,996 minutes... just check alignment and order.
	next, ok := cs.next(testStart)
	if !ok || next.UnixMilli()%1500000 != 0 || !next.After(testStart) || next.Sub(testStart) > 25*time.Minute {
		t.Fatalf("next %v", next)
	}
}

func TestScheduledJobRuns(t *testing.T) {
	ts, _ := newFake(t, Options{})
	job := minimalJob("scheduled-job")
	job["schedule"] = map[string]any{"intervals": []any{map[string]any{"every": "10m"}}, "jitter": "1m"}
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)

	detail := func() map[string]any {
		var d map[string]any
		call(t, ts, "GET", "/jobs/scheduled-job", nil).decode(t, &d)
		return d
	}
	if d := detail(); d["next_run_time"] != iso(10*time.Minute) {
		t.Fatalf("next_run_time %v", d["next_run_time"])
	}
	var list []map[string]any
	call(t, ts, "GET", "/jobs", nil).decode(t, &list)
	if list[0]["schedule_id"] == nil || list[0]["next_run_time"] != iso(10*time.Minute) {
		t.Fatalf("list %v", list[0])
	}

	ts.Advance(35 * time.Minute)
	runs := listRunViews(t, ts, "scheduled-job")
	if len(runs) != 3 {
		t.Fatalf("%d runs after 35m, want 3", len(runs))
	}
	for i, r := range runs { // newest first
		if r.Type != JobRunScheduled || r.Status != JobRunCompleted || *r.StartTime != iso(time.Duration(30-10*i)*time.Minute) {
			t.Fatalf("run %d: %+v", i, r)
		}
	}
	if d := detail(); d["next_run_time"] != iso(40*time.Minute) || d["last_run_time"] != iso(30*time.Minute) {
		t.Fatalf("after runs: next %v last %v", d["next_run_time"], d["last_run_time"])
	}

	// Paused: no schedule, no next_run_time.
	mustStatus(t, call(t, ts, "POST", "/jobs/scheduled-job/pause", nil), 200)
	if d := detail(); d["next_run_time"] != nil {
		t.Fatalf("paused next_run_time %v", d["next_run_time"])
	}
	ts.Advance(time.Hour)
	if n := len(listRunViews(t, ts, "scheduled-job")); n != 3 {
		t.Fatalf("%d runs while paused", n)
	}
	mustStatus(t, call(t, ts, "POST", "/jobs/scheduled-job/resume", nil), 200)
	if d := detail(); d["next_run_time"] != iso(100*time.Minute) {
		t.Fatalf("resumed next_run_time %v", d["next_run_time"])
	}

	// An update to a calendar schedule re-arms it.
	upd := minimalJob("")
	delete(upd, "id")
	upd["schedule"] = map[string]any{"calendars": []any{map[string]any{"hour": 12, "minute": 30}}}
	mustStatus(t, call(t, ts, "PUT", "/jobs/scheduled-job", upd), 200)
	if d := detail(); d["next_run_time"] != "2026-01-05T12:30:00.000Z" {
		t.Fatalf("calendar next_run_time %v", d["next_run_time"])
	}
	ts.Advance(24 * time.Hour)
	if n := len(listRunViews(t, ts, "scheduled-job")); n != 4 {
		t.Fatalf("%d runs, want 4 (one calendar fire)", n)
	}
	// Deleting the job stops it; nothing fires afterwards.
	mustStatus(t, call(t, ts, "DELETE", "/jobs/scheduled-job", nil), 204)
	before := len(ts.APIRuns(""))
	ts.Advance(48 * time.Hour)
	if after := len(ts.APIRuns("")); after != before {
		t.Fatalf("deleted job still ran")
	}
}

func listRunViews(t *testing.T, ts *TestServer, jobID string) []runView {
	t.Helper()
	var p struct {
		JobRuns []runView `json:"jobRuns"`
	}
	call(t, ts, "GET", "/jobs/"+jobID+"/runs?pageSize=100", nil).decode(t, &p)
	return p.JobRuns
}
