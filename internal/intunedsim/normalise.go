package intunedsim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// A real Intuned may normalise what it stores in ways no document tells
// (defaults, rounding, stripping). NormaliseRule lets tests and users make
// the simulator do that on purpose: on every create and update, the stored
// Job (in Create body form) has Path set to Value, or removed when Value is
// empty. Rules are not applied to admin drift patches.
type NormaliseRule struct {
	// Path is dotted, with numeric list indexes: "configuration.requestTimeout",
	// "payload.0.requestTimeout", "sink.headers".
	Path string `json:"path"`
	// Value is the JSON value to store; empty removes the field.
	Value json.RawMessage `json:"value,omitempty"`
}

// ParseNormaliseRule parses "path=json" ("configuration.requestTimeout=300")
// or "path=" (remove the field).
func ParseNormaliseRule(s string) (NormaliseRule, error) {
	path, val, ok := strings.Cut(s, "=")
	path = strings.TrimSpace(path)
	if !ok || path == "" {
		return NormaliseRule{}, fmt.Errorf("normalise rule %q: want path=json-value or path= (remove)", s)
	}
	r := NormaliseRule{Path: path}
	if val = strings.TrimSpace(val); val != "" {
		if !json.Valid([]byte(val)) {
			return NormaliseRule{}, fmt.Errorf("normalise rule %q: value is not JSON (quote strings: path=\"x\")", s)
		}
		r.Value = json.RawMessage(val)
	}
	return r, nil
}

// SetNormalise replaces the normalisation rules.
func (s *Server) SetNormalise(rules []NormaliseRule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.normalise = append([]NormaliseRule(nil), rules...)
}

// normaliseLocked applies the rules to a validated spec. A rule whose path
// does not exist in the Job is skipped.
func (s *Server) normaliseLocked(spec *jobSpec) {
	if len(s.normalise) == 0 {
		return
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return
	}
	var doc any
	if json.Unmarshal(b, &doc) != nil {
		return
	}
	for _, r := range s.normalise {
		var v any
		if len(r.Value) > 0 {
			_ = json.Unmarshal(r.Value, &v)
		}
		setPath(doc, strings.Split(r.Path, "."), v, len(r.Value) == 0)
	}
	b, _ = json.Marshal(doc)
	var out jobSpec
	if json.Unmarshal(b, &out) != nil {
		return // a rule produced a shape the wire types cannot hold: skip
	}
	// Not part of the wire form (see sinkWire).
	if spec.Sink != nil && out.Sink != nil {
		out.Sink.Retry, out.Sink.Timeout = spec.Sink.Retry, spec.Sink.Timeout
	}
	*spec = out
}

func setPath(doc any, path []string, v any, remove bool) {
	for i, key := range path {
		last := i == len(path)-1
		switch d := doc.(type) {
		case map[string]any:
			if last {
				if remove {
					delete(d, key)
				} else if _, ok := d[key]; ok {
					d[key] = v
				}
				return
			}
			doc = d[key]
		case []any:
			n, err := strconv.Atoi(key)
			if err != nil || n < 0 || n >= len(d) {
				return
			}
			if last {
				if !remove {
					d[n] = v
				}
				return
			}
			doc = d[n]
		default:
			return
		}
	}
}
