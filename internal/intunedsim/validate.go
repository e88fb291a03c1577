package intunedsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Request decoding and Intuned's validation. Everything a real Intuned
// would refuse becomes a 400 bad-request whose details list each problem.
// Unknown keys are ignored (Intuned's zod schemas strip them).

const (
	defaultRequestTimeout  = 600
	defaultMaximumAttempts = 3
	minJobIDLength         = 7
	maxBodyBytes           = 1 << 20
)

var jobIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// validJobID reports whether id satisfies Intuned's job id rule.
func validJobID(id string) (string, bool) {
	switch {
	case id == "":
		return "is required", false
	case len(id) < minJobIDLength:
		return fmt.Sprintf("must be at least %d characters long", minJobIDLength), false
	case !jobIDPattern.MatchString(id):
		return "must match ^[a-zA-Z0-9_-]+$ (a valid URL slug)", false
	}
	return "", true
}

// decodeJobSpec parses a Create (withID) or Update body, validates it, fills
// Intuned's defaults and compiles the schedule.
func decodeJobSpec(body []byte, withID bool) (*jobSpec, *compiledSchedule, *apiError) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, nil, badRequest("Invalid request body: expected a JSON object")
	}
	// encoding/json matches keys case-insensitively; Intuned does not.
	body = dropMiscasedKeys(body)
	var spec jobSpec
	if err := json.Unmarshal(body, &spec); err != nil {
		return nil, nil, badRequest("Invalid request body: "+describeJSONError(err), fieldError{jsonErrorPath(err), describeJSONError(err)})
	}
	var errs []fieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fieldError{path, fmt.Sprintf(format, args...)})
	}
	present := func(key string) bool {
		raw, ok := top[key]
		return ok && string(bytes.TrimSpace(raw)) != "null"
	}

	if withID {
		if msg, ok := validJobID(spec.ID); !ok {
			add("id", "%s", msg)
		}
	} else {
		spec.ID = "" // the id comes from the path on update
	}

	if !present("payload") {
		add("payload", "is required")
	}
	for i := range spec.Payload {
		p := &spec.Payload[i]
		path := fmt.Sprintf("payload[%d]", i)
		if strings.TrimSpace(p.APIName) == "" {
			add(path+".apiName", "is required")
		}
		if !isJSONObject(p.Parameters) {
			add(path+".parameters", "is required and must be an object")
		}
		if p.RequestTimeout == nil {
			v := defaultRequestTimeout
			p.RequestTimeout = &v
		} else if *p.RequestTimeout <= 0 {
			add(path+".requestTimeout", "must be a positive number of seconds")
		}
		checkRetry(p.Retry, path+".retry", add)
	}

	if !present("configuration") {
		add("configuration", "is required")
	} else if !isJSONObject(top["configuration"]) {
		add("configuration", "must be an object")
	}
	c := &spec.Configuration
	if c.RequestTimeout == nil {
		v := defaultRequestTimeout
		c.RequestTimeout = &v
	} else if *c.RequestTimeout <= 0 {
		add("configuration.requestTimeout", "must be a positive number of seconds")
	}
	// The SDK types maxConcurrentRequests as a number (not an integer), so
	// 2.5 is accepted and stored as sent; runs use its floor (at least 1).
	if c.MaxConcurrentRequests != nil && *c.MaxConcurrentRequests <= 0 {
		add("configuration.maxConcurrentRequests", "must be greater than 0")
	}
	checkRetry(c.Retry, "configuration.retry", add)

	if sc := spec.Schedule; sc != nil {
		// Empty lists and an absent list mean the same; store one form.
		if len(sc.Intervals) == 0 {
			sc.Intervals = nil
		}
		if len(sc.Calendars) == 0 {
			sc.Calendars = nil
		}
	}
	compiled, schedErrs := compileSchedule(spec.Schedule)
	if sc := spec.Schedule; sc != nil {
		for i := range sc.Calendars {
			c := &sc.Calendars[i]
			for _, f := range []*json.RawMessage{&c.Second, &c.Minute, &c.Hour, &c.DayOfMonth, &c.DayOfWeek, &c.Month, &c.Year} {
				*f = normaliseCalendar(*f)
			}
		}
	}
	errs = append(errs, schedErrs...)

	if spec.Sink != nil {
		var extra struct {
			Retry   *int `json:"retry"`
			Timeout *int `json:"timeout"`
		}
		if err := json.Unmarshal(top["sink"], &extra); err != nil {
			add("sink", "%s", describeJSONError(err))
		}
		spec.Sink.Retry, spec.Sink.Timeout = extra.Retry, extra.Timeout
		errs = append(errs, normaliseSink(spec.Sink)...)
	}

	if spec.Proxy != nil {
		if u, err := url.Parse(*spec.Proxy); err != nil || u.Scheme == "" || u.Host == "" {
			add("proxy", "must be a URL like http://user:pass@host:port")
		}
	}

	if a := spec.AuthSession; a != nil {
		if strings.TrimSpace(a.ID) == "" {
			add("auth_session.id", "is required")
		}
		for name, p := range map[string]**int{"checkAttempts": &a.CheckAttempts, "createAttempts": &a.CreateAttempts} {
			if *p == nil {
				v := defaultMaximumAttempts
				*p = &v
			} else if **p < 1 {
				add("auth_session."+name, "must be at least 1")
			}
		}
	}

	if len(errs) > 0 {
		return nil, nil, badRequest("Invalid request body: "+summarise(errs), errs...)
	}
	return &spec, compiled, nil
}

func checkRetry(r *retryWire, path string, add func(string, string, ...any)) {
	if r == nil {
		return
	}
	if r.MaximumAttempts == nil {
		v := defaultMaximumAttempts
		r.MaximumAttempts = &v
	} else if *r.MaximumAttempts < 1 {
		add(path+".maximumAttempts", "must be at least 1")
	}
}

// normaliseSink validates a sink and clears the fields that belong to the
// other sink type, as Intuned's discriminated union does.
func normaliseSink(s *sinkWire) []fieldError {
	var errs []fieldError
	add := func(path, msg string) { errs = append(errs, fieldError{path, msg}) }
	if len(s.Headers) == 0 {
		s.Headers = nil
	}
	if len(s.APIsToSend) == 0 {
		s.APIsToSend = nil
	}
	for i, a := range s.APIsToSend {
		if strings.TrimSpace(a) == "" {
			add(fmt.Sprintf("sink.apisToSend[%d]", i), "must not be empty")
		}
	}
	switch s.Type {
	case "webhook":
		u, err := url.Parse(s.URL)
		switch {
		case s.URL == "":
			add("sink.url", "is required for a webhook sink")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			add("sink.url", "must be an absolute http(s) URL")
		}
		if s.Timeout != nil && *s.Timeout <= 0 {
			add("sink.timeout", "must be a positive number of milliseconds")
		}
		if s.Retry != nil && *s.Retry < 0 {
			add("sink.retry", "must not be negative")
		}
		s.Bucket, s.AccessKeyID, s.SecretAccessKey, s.Region, s.Prefix, s.Endpoint, s.ForcePathStyle = "", "", "", "", "", "", nil
	case "s3":
		for path, v := range map[string]string{"sink.bucket": s.Bucket, "sink.accessKeyId": s.AccessKeyID, "sink.secretAccessKey": s.SecretAccessKey, "sink.region": s.Region} {
			if strings.TrimSpace(v) == "" {
				add(path, "is required for an s3 sink")
			}
		}
		s.URL, s.Headers, s.Retry, s.Timeout = "", nil, nil, nil
	case "":
		add("sink.type", `is required ("webhook" or "s3")`)
	default:
		add("sink.type", fmt.Sprintf(`unsupported sink type %q (want "webhook" or "s3")`, s.Type))
	}
	return sortedErrors(errs)
}

func sortedErrors(errs []fieldError) []fieldError {
	// map iteration above is random; keep reports stable.
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && errs[j].Path < errs[j-1].Path; j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
	return errs
}

func isJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

func summarise(errs []fieldError) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, e.Path+" "+e.Message)
	}
	return strings.Join(parts, "; ")
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "body"
		}
		want := jsonTypeName(te.Type.Kind().String())
		// A fraction or an exponent where the SDK's schema says integer
		// (requestTimeout, maximumAttempts, ...): say exactly that.
		if want == "an integer" && strings.HasPrefix(te.Value, "number") {
			return fmt.Sprintf("%s must be an integer (the SDK schema says int), got %s", field, strings.TrimPrefix(te.Value, "number "))
		}
		return fmt.Sprintf("%s must be %s, got %s", field, want, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at offset %d", se.Offset)
	}
	return err.Error()
}

func jsonErrorPath(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	return "body"
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64":
		return "an integer"
	case "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return kind
}

// knownKeys are the wire names of every field the decoder knows.
var knownKeys = strings.Fields(`id payload apiName parameters requestTimeout retry maximumAttempts
	configuration maxConcurrentRequests schedule jitter intervals every calendars second minute hour
	dayOfMonth dayOfWeek month year comment start end step sink type url headers bucket accessKeyId
	secretAccessKey region prefix endpoint forcePathStyle skipOnFail apisToSend timeout proxy
	auth_session checkAttempts createAttempts`)

// dropMiscasedKeys removes object keys that differ only in case from a known
// key (e.g. "ApiName"): Intuned would treat them as unknown and ignore them,
// while encoding/json would accept them. Free-form values (parameters,
// headers) are left untouched. Input that is not valid JSON is returned as is.
func dropMiscasedKeys(raw []byte) []byte {
	out, changed := cleanKeys(raw)
	if !changed {
		return raw
	}
	return out
}

func cleanKeys(raw json.RawMessage) (json.RawMessage, bool) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return raw, false
	}
	switch trimmed[0] {
	case '{':
		var obj map[string]json.RawMessage
		if json.Unmarshal(trimmed, &obj) != nil {
			return raw, false
		}
		changed := false
		for k, v := range obj {
			if miscased(k) {
				delete(obj, k)
				changed = true
				continue
			}
			if k == "parameters" || k == "headers" {
				continue
			}
			if nv, ch := cleanKeys(v); ch {
				obj[k], changed = nv, true
			}
		}
		if !changed {
			return raw, false
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return raw, false
		}
		return b, true
	case '[':
		var arr []json.RawMessage
		if json.Unmarshal(trimmed, &arr) != nil {
			return raw, false
		}
		changed := false
		for i, v := range arr {
			if nv, ch := cleanKeys(v); ch {
				arr[i], changed = nv, true
			}
		}
		if !changed {
			return raw, false
		}
		b, err := json.Marshal(arr)
		if err != nil {
			return raw, false
		}
		return b, true
	}
	return raw, false
}

func miscased(k string) bool {
	for _, known := range knownKeys {
		if k != known && strings.EqualFold(k, known) {
			return true
		}
	}
	return false
}
