package intuned

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Schedule says when Intuned starts JobRuns on its own: every interval and at
// every calendar match. Values are Temporal-style; there is no cron string.
type Schedule struct {
	// Jitter is milliseconds (number) or an ms-style duration string ("6h").
	Jitter    *NumOrString `json:"jitter,omitempty"`
	Intervals []Interval   `json:"intervals,omitempty"`
	Calendars []Calendar   `json:"calendars,omitempty"`
}

// Interval fires every Every, relative to the Unix epoch.
type Interval struct {
	// Every is milliseconds (number) or an ms-style duration string ("1h").
	Every NumOrString `json:"every"`
}

// UnmarshalJSON implements json.Unmarshaler; "every" is required.
func (iv *Interval) UnmarshalJSON(b []byte) error {
	var w struct {
		Every *NumOrString `json:"every"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Every == nil {
		return fmt.Errorf("intuned: interval needs \"every\"")
	}
	*iv = Interval{Every: *w.Every}
	return nil
}

// Calendar is a cron-like match. Unset fields use Intuned's defaults.
type Calendar struct {
	Second     *CalendarField `json:"second,omitempty"`     // 0-59
	Minute     *CalendarField `json:"minute,omitempty"`     // 0-59
	Hour       *CalendarField `json:"hour,omitempty"`       // 0-23
	DayOfMonth *CalendarField `json:"dayOfMonth,omitempty"` // 1-31
	DayOfWeek  *CalendarField `json:"dayOfWeek,omitempty"`  // "SUNDAY".."SATURDAY"
	Month      *CalendarField `json:"month,omitempty"`      // "JANUARY".."DECEMBER"
	Year       *CalendarField `json:"year,omitempty"`       // e.g. 2026
	Comment    string         `json:"comment,omitempty"`
}

// NumOrString is a JSON value that is either a number or a string. Numbers
// keep their exact JSON text, so 3600000 is re-encoded as 3600000, never as
// 3.6e+06.
type NumOrString struct {
	num   json.Number // set when the value is a number
	str   string      // set when the value is a string
	isStr bool
}

// Num returns a NumOrString holding the number n.
func Num(n int64) NumOrString { return NumOrString{num: json.Number(strconv.FormatInt(n, 10))} }

// Str returns a NumOrString holding the string s (a name such as "MONDAY",
// a duration such as "1h", or "*").
func Str(s string) NumOrString { return NumOrString{str: s, isStr: true} }

// IsString reports whether the value is a JSON string.
func (v NumOrString) IsString() bool { return v.isStr }

// String returns the string value, or the number's JSON text.
func (v NumOrString) String() string {
	if v.isStr {
		return v.str
	}
	return v.num.String()
}

// Int64 returns the value as an integer when it is an integral number.
func (v NumOrString) Int64() (int64, bool) {
	if v.isStr {
		return 0, false
	}
	n, err := v.num.Int64()
	return n, err == nil
}

// MarshalJSON implements json.Marshaler.
func (v NumOrString) MarshalJSON() ([]byte, error) {
	if v.isStr {
		return json.Marshal(v.str)
	}
	if v.num == "" {
		return nil, fmt.Errorf("intuned: empty number")
	}
	return []byte(v.num), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *NumOrString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = Str(s)
		return nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil || n == "" {
		return fmt.Errorf("intuned: want a number or a string, got %.40s", b)
	}
	*v = NumOrString{num: n}
	return nil
}

// CalendarRange is a range of calendar values: {start, end?, step?}. Start and
// End are numbers, or names for dayOfWeek and month.
type CalendarRange struct {
	Start NumOrString  `json:"start"`
	End   *NumOrString `json:"end,omitempty"`
	Step  *NumOrString `json:"step,omitempty"`
}

// CalendarItem is a single value or a range.
type CalendarItem struct {
	Value NumOrString    // used when Range is nil
	Range *CalendarRange // a {start,end?,step?} object
}

// MarshalJSON implements json.Marshaler.
func (it CalendarItem) MarshalJSON() ([]byte, error) {
	if it.Range != nil {
		return json.Marshal(it.Range)
	}
	return json.Marshal(it.Value)
}

// UnmarshalJSON implements json.Unmarshaler.
func (it *CalendarItem) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var r struct {
			Start *NumOrString `json:"start"`
			End   *NumOrString `json:"end"`
			Step  *NumOrString `json:"step"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		if r.Start == nil {
			return fmt.Errorf("intuned: calendar range needs \"start\"")
		}
		*it = CalendarItem{Range: &CalendarRange{Start: *r.Start, End: r.End, Step: r.Step}}
		return nil
	}
	var v NumOrString
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*it = CalendarItem{Value: v}
	return nil
}

// CalendarField is one field of a Calendar. Intuned accepts a single value
// (12, "MONDAY", "*"), a range object, or a list of values and ranges. List
// records whether the JSON was an array so that [12] and 12 both round-trip.
type CalendarField struct {
	List  bool
	Items []CalendarItem
}

// CalValues returns a field holding one value, or a list when given several.
func CalValues(values ...NumOrString) *CalendarField {
	f := &CalendarField{List: len(values) != 1}
	for _, v := range values {
		f.Items = append(f.Items, CalendarItem{Value: v})
	}
	return f
}

// CalAny returns the "*" (every value) field.
func CalAny() *CalendarField { return CalValues(Str("*")) }

// MarshalJSON implements json.Marshaler.
func (f CalendarField) MarshalJSON() ([]byte, error) {
	if f.List {
		items := f.Items
		if items == nil {
			items = []CalendarItem{}
		}
		return json.Marshal(items)
	}
	if len(f.Items) != 1 {
		return nil, fmt.Errorf("intuned: calendar field that is not a list needs exactly one item, has %d", len(f.Items))
	}
	return json.Marshal(f.Items[0])
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *CalendarField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var items []CalendarItem
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
		*f = CalendarField{List: true, Items: items}
		return nil
	}
	var it CalendarItem
	if err := json.Unmarshal(b, &it); err != nil {
		return err
	}
	*f = CalendarField{Items: []CalendarItem{it}}
	return nil
}
