package intuned

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Time is a timestamp as Intuned sends it. The SDK types most timestamps
// (created_at, next_run_time, start_time, ...) as plain strings, so a
// server may send any ISO-8601 flavour; a strict time.Time would fail the
// whole answer on one it did not expect. Time accepts the common ones and
// keeps the text: an unknown format reads as the zero time, never as an
// error. Marshalling writes the text back unchanged.
type Time struct {
	time.Time
	// Raw is the text Intuned sent.
	Raw string
}

// timeLayouts are tried in order. Without a zone the time is UTC (Intuned
// schedules and examples are UTC).
var timeLayouts = []string{
	time.RFC3339Nano,                     // 2026-01-05T09:00:00.123Z, ...+00:00
	"2006-01-02T15:04:05.999999999Z0700", // +0000
	"2006-01-02T15:04:05.999999999Z07",   // +00
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999Z07", // PostgreSQL's text form
	"2006-01-02T15:04:05.999999999",    // no zone
	"2006-01-02 15:04:05.999999999",
	time.RFC1123,  // Mon, 05 Jan 2026 09:00:00 UTC (Date.toUTCString)
	time.RFC1123Z, // ... +0000
}

// ParseTime parses s in any format Time accepts.
func ParseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// UnmarshalJSON implements json.Unmarshaler. null leaves t unchanged.
func (t *Time) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		// Not a string: keep the text, read as zero (the SDK would
		// reject it; the controller should not).
		*t = Time{Raw: string(b)}
		return nil
	}
	parsed, _ := ParseTime(s)
	*t = Time{Time: parsed, Raw: s}
	return nil
}

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.Raw != "" {
		return json.Marshal(t.Raw)
	}
	return json.Marshal(t.Time.UTC().Format("2006-01-02T15:04:05.000Z"))
}

// Ptr returns the time, or nil when it is unset or could not be parsed.
func (t *Time) Ptr() *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	v := t.Time
	return &v
}
