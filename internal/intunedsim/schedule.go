package intunedsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Schedules follow Temporal's semantics (Intuned schedules are Temporal
// schedules): intervals fire at every multiple of `every` since the Unix
// epoch; calendar specs match wall-clock fields in UTC, with unset second,
// minute and hour meaning 0 and every other unset field meaning "*". A job
// fires at the earliest time any of its specs matches. Jitter is accepted,
// validated and ignored (documented simplification).

// compiledSchedule is the parsed form of scheduleWire.
type compiledSchedule struct {
	intervals []time.Duration
	calendars []calendarSpec
}

// calendarSpec holds, per field, the set of allowed values.
type calendarSpec struct {
	second, minute, hour [60]bool
	dayOfMonth           [32]bool    // 1..31
	month                [13]bool    // 1..12
	dayOfWeek            [7]bool     // 0 = Sunday
	years                []yearRange // empty = any year
}

type yearRange struct{ start, end, step int }

func (y yearRange) has(v int) bool {
	return v >= y.start && v <= y.end && (v-y.start)%y.step == 0
}

var msPattern = regexp.MustCompile(`(?i)^(-?(?:\d+)?\.?\d+) *(milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w|years?|yrs?|y)?$`)

// parseMS parses a vercel/ms style duration: an integer number of
// milliseconds (the SDK's schema says int), or a string like "1h", "30m",
// "10s", "2 days", "500" (ms). zeroOK allows 0 (jitter: none).
func parseMS(raw json.RawMessage, zeroOK bool) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Errorf("is required")
	}
	var num float64
	if err := json.Unmarshal(raw, &num); err == nil {
		switch {
		case num != math.Trunc(num):
			return 0, fmt.Errorf("must be an integer number of milliseconds (the SDK schema says int), got %s", raw)
		case num == 0 && zeroOK:
			return 0, nil
		case num <= 0 || num > float64(100*365*24*time.Hour/time.Millisecond):
			return 0, fmt.Errorf("must be a positive number of milliseconds")
		}
		return time.Duration(num * float64(time.Millisecond)), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("must be a number of milliseconds or a duration string like \"1h\"")
	}
	m := msPattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid duration string %q (examples: \"10s\", \"30m\", \"1h\", \"2d\")", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil || n <= 0 || n > 1e12 {
		return 0, fmt.Errorf("invalid duration string %q: must be positive", s)
	}
	unit := time.Millisecond
	switch u := strings.ToLower(m[2]); {
	case u == "" || strings.HasPrefix(u, "ms") || strings.HasPrefix(u, "milli"):
		unit = time.Millisecond
	case strings.HasPrefix(u, "s"):
		unit = time.Second
	case strings.HasPrefix(u, "m"):
		unit = time.Minute
	case strings.HasPrefix(u, "h"):
		unit = time.Hour
	case strings.HasPrefix(u, "d"):
		unit = 24 * time.Hour
	case strings.HasPrefix(u, "w"):
		unit = 7 * 24 * time.Hour
	case strings.HasPrefix(u, "y"):
		unit = time.Duration(365.25 * 24 * float64(time.Hour))
	}
	d := time.Duration(n * float64(unit))
	if d < time.Millisecond {
		return 0, fmt.Errorf("invalid duration string %q: below 1ms", s)
	}
	return d, nil
}

var dayNames = []string{"SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"}
var monthNames = []string{"", "JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER"}

// fieldKind describes one calendar field: its value range and, for
// dayOfWeek/month, the names it accepts instead of numbers.
type fieldKind struct {
	name     string
	min, max int
	names    []string // index = value
}

var (
	fSecond = fieldKind{"second", 0, 59, nil}
	fMinute = fieldKind{"minute", 0, 59, nil}
	fHour   = fieldKind{"hour", 0, 23, nil}
	fDOM    = fieldKind{"dayOfMonth", 1, 31, nil}
	fDOW    = fieldKind{"dayOfWeek", 0, 6, dayNames}
	fMonth  = fieldKind{"month", 1, 12, monthNames}
	fYear   = fieldKind{"year", 1970, 9999, nil}
)

// rangeSpec is one {start, end, step} range after parsing.
type rangeSpec struct{ start, end, step int }

// parseField parses a calendar field value: number | name | "*" |
// {start, end?, step?} | array of those. Unset (nil) yields def.
func parseField(raw json.RawMessage, k fieldKind, def []rangeSpec) ([]rangeSpec, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return def, nil
	}
	if raw[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("%s: invalid list", k.name)
		}
		// The SDK accepts an empty list; it matches no value, so the
		// calendar never fires.
		out := []rangeSpec{}
		for _, it := range items {
			if bytes.HasPrefix(bytes.TrimSpace(it), []byte("[")) {
				return nil, fmt.Errorf("%s: nested lists are not allowed", k.name)
			}
			// The SDK allows "*" only as the whole field, not in a list.
			if string(bytes.TrimSpace(it)) == `"*"` {
				return nil, fmt.Errorf("%s: \"*\" is allowed only as the whole field, not inside a list", k.name)
			}
			r, err := parseField(it, k, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, r...)
		}
		return out, nil
	}
	if raw[0] == '{' {
		var obj struct {
			Start json.RawMessage `json:"start"`
			End   json.RawMessage `json:"end"`
			Step  *int            `json:"step"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, fmt.Errorf("%s: invalid range object (want {start, end?} or {start, step, end}; step an integer)", k.name)
		}
		if len(obj.End) == 0 || string(obj.End) == "null" {
			// {start, step} matches no SDK shape but {start, end?}, which
			// strips step: the step is dropped (normaliseCalendar does
			// the same to the stored JSON).
			obj.Step = nil
		}
		start, err := parseValue(obj.Start, k)
		if err != nil {
			return nil, err
		}
		end := start
		if len(obj.End) > 0 && string(obj.End) != "null" {
			if end, err = parseValue(obj.End, k); err != nil {
				return nil, err
			}
		}
		step := 1
		if obj.Step != nil {
			step = *obj.Step
		}
		if step < 1 {
			return nil, fmt.Errorf("%s: step must be at least 1", k.name)
		}
		if end < start {
			return nil, fmt.Errorf("%s: range end %d is before start %d", k.name, end, start)
		}
		return []rangeSpec{{start, end, step}}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s == "*" {
		return []rangeSpec{{k.min, k.max, 1}}, nil
	}
	v, err := parseValue(raw, k)
	if err != nil {
		return nil, err
	}
	return []rangeSpec{{v, v, 1}}, nil
}

// parseValue parses a single number or (for days/months) name.
func parseValue(raw json.RawMessage, k fieldKind) (int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Errorf("%s: range start is required", k.name)
	}
	if k.names != nil {
		// dayOfWeek and month take upper-case English names only (the
		// SDK's enums): no numbers, no other spelling.
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			for i, name := range k.names {
				if name != "" && name == s {
					return i, nil
				}
			}
			return 0, fmt.Errorf("%s: unknown name %q (want one of %s, upper case)", k.name, s, strings.Join(nonEmpty(k.names), ", "))
		}
		return 0, fmt.Errorf("%s: want a name like %q (upper case, not a number), a range object, a list or \"*\"", k.name, k.names[len(k.names)-1])
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil {
		n := int(f)
		switch {
		case f != math.Trunc(f):
			return 0, fmt.Errorf("%s: %s must be an integer (the SDK schema says int)", k.name, raw)
		case f < float64(k.min) || f > float64(k.max):
			return 0, fmt.Errorf("%s: %s is out of range %d-%d", k.name, raw, k.min, k.max)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: want an integer %d-%d, a range object, a list or \"*\"", k.name, k.min, k.max)
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func fill(dst []bool, ranges []rangeSpec) {
	for _, r := range ranges {
		for v := r.start; v <= r.end && v < len(dst); v += r.step {
			dst[v] = true
		}
	}
}

// compileCalendar validates and compiles one calendar item.
func compileCalendar(c calendarWire) (calendarSpec, error) {
	var spec calendarSpec
	zero := []rangeSpec{{0, 0, 1}}
	type step struct {
		raw json.RawMessage
		k   fieldKind
		def []rangeSpec
		dst []bool
	}
	steps := []step{
		{c.Second, fSecond, zero, spec.second[:]},
		{c.Minute, fMinute, zero, spec.minute[:]},
		{c.Hour, fHour, zero, spec.hour[:]},
		{c.DayOfMonth, fDOM, []rangeSpec{{1, 31, 1}}, spec.dayOfMonth[:]},
		{c.DayOfWeek, fDOW, []rangeSpec{{0, 6, 1}}, spec.dayOfWeek[:]},
		{c.Month, fMonth, []rangeSpec{{1, 12, 1}}, spec.month[:]},
	}
	for _, s := range steps {
		r, err := parseField(s.raw, s.k, s.def)
		if err != nil {
			return spec, err
		}
		fill(s.dst, r)
	}
	years, err := parseField(c.Year, fYear, nil)
	if err != nil {
		return spec, err
	}
	if years != nil {
		spec.years = []yearRange{} // set, possibly empty: no year matches
	}
	for _, y := range years {
		spec.years = append(spec.years, yearRange(y))
	}
	return spec, nil
}

func (c *calendarSpec) yearOK(y int) bool {
	if c.years == nil {
		return true // unset: every year
	}
	for _, r := range c.years {
		if r.has(y) {
			return true
		}
	}
	return false
}

// next returns the first instant strictly after t that matches, searching at
// most ten years ahead.
func (c *calendarSpec) next(t time.Time) (time.Time, bool) {
	t = t.UTC().Truncate(time.Second).Add(time.Second)
	limit := t.AddDate(10, 0, 0)
	for t.Before(limit) {
		if !c.yearOK(t.Year()) {
			t = time.Date(t.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.month[int(t.Month())] {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.dayOfMonth[t.Day()] || !c.dayOfWeek[int(t.Weekday())] {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.hour[t.Hour()] {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
			continue
		}
		if !c.minute[t.Minute()] {
			t = t.Truncate(time.Minute).Add(time.Minute)
			continue
		}
		if !c.second[t.Second()] {
			t = t.Add(time.Second)
			continue
		}
		return t, true
	}
	return time.Time{}, false
}

// compileSchedule validates a schedule and returns its parsed form.
func compileSchedule(s *scheduleWire) (*compiledSchedule, []fieldError) {
	if s == nil {
		return nil, nil
	}
	var errs []fieldError
	out := &compiledSchedule{}
	if len(s.Jitter) > 0 && string(s.Jitter) != "null" {
		if _, err := parseMS(s.Jitter, true); err != nil {
			errs = append(errs, fieldError{"schedule.jitter", err.Error()})
		}
	}
	for i, iv := range s.Intervals {
		d, err := parseMS(iv.Every, false)
		if err != nil {
			errs = append(errs, fieldError{fmt.Sprintf("schedule.intervals[%d].every", i), err.Error()})
			continue
		}
		if d < time.Second {
			errs = append(errs, fieldError{fmt.Sprintf("schedule.intervals[%d].every", i), "must be at least 1s"})
			continue
		}
		out.intervals = append(out.intervals, d)
	}
	for i, c := range s.Calendars {
		spec, err := compileCalendar(c)
		if err != nil {
			errs = append(errs, fieldError{fmt.Sprintf("schedule.calendars[%d].%s", i, strings.SplitN(err.Error(), ":", 2)[0]), err.Error()})
			continue
		}
		out.calendars = append(out.calendars, spec)
	}
	return out, errs
}

// next returns the earliest fire time strictly after t over all specs.
func (cs *compiledSchedule) next(t time.Time) (time.Time, bool) {
	if cs == nil {
		return time.Time{}, false
	}
	var best time.Time
	found := false
	consider := func(c time.Time) {
		if !found || c.Before(best) {
			best, found = c, true
		}
	}
	for _, every := range cs.intervals {
		ms := every.Milliseconds()
		now := t.UnixMilli()
		n := (now/ms + 1) * ms
		consider(time.UnixMilli(n).UTC())
	}
	for i := range cs.calendars {
		if c, ok := cs.calendars[i].next(t); ok {
			consider(c)
		}
	}
	return best, found
}

// normaliseCalendar rewrites a stored calendar field the way the SDK's
// response schema would read it: a range object keeps only start, end and
// step, and loses step when it has no end (the only SDK shape with a step is
// {start, step, end}). Anything else is returned unchanged.
func normaliseCalendar(raw json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return raw
	}
	switch t[0] {
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(t, &items) != nil {
			return raw
		}
		for i := range items {
			items[i] = normaliseCalendar(items[i])
		}
		b, _ := json.Marshal(items)
		return b
	case '{':
		var r struct {
			Start json.RawMessage `json:"start"`
			Step  json.RawMessage `json:"step,omitempty"`
			End   json.RawMessage `json:"end,omitempty"`
		}
		if json.Unmarshal(t, &r) != nil {
			return raw
		}
		if len(r.End) == 0 || string(r.End) == "null" {
			r.Step, r.End = nil, nil
		}
		if string(r.Step) == "null" {
			r.Step = nil
		}
		b, _ := json.Marshal(r)
		return b
	}
	return raw
}
