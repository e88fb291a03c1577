// Package wireschema is the project's own, strict description of every
// request and response of Intuned's Jobs and JobRuns endpoints that the
// operator and intuned-sim model. It is written from docs/intuned-api.md
// (checked against the official SDK's v0.5.2 schemas), not generated from
// the SDK. Only tests use it.
//
// "Strict" means: every key must be known (the SDK's zod schemas would
// silently strip an unknown key, which is how a misspelt key such as
// authSession goes unnoticed), every required key present, integers where
// the SDK says int, and enums closed. The contract tests check every
// request the client sends and every answer the simulator gives.
package wireschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Schema checks one decoded JSON value (json.Number for numbers).
type Schema interface {
	check(path string, v any, errs *[]string)
}

// Check decodes data and reports every way it does not conform, as
// "path: problem" lines; nil means it conforms.
func Check(s Schema, data []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{"body: not JSON: " + err.Error()}
	}
	var errs []string
	s.check("", v, &errs)
	return errs
}

func fail(errs *[]string, path, format string, args ...any) {
	if path == "" {
		path = "(root)"
	}
	*errs = append(*errs, path+": "+fmt.Sprintf(format, args...))
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

type kind string

func (k kind) check(path string, v any, errs *[]string) {
	switch k {
	case "any":
		return
	case "string":
		if _, ok := v.(string); ok {
			return
		}
	case "boolean":
		if _, ok := v.(bool); ok {
			return
		}
	case "number":
		if _, ok := v.(json.Number); ok {
			return
		}
	case "integer":
		if n, ok := v.(json.Number); ok {
			if _, err := n.Int64(); err == nil {
				return
			}
			fail(errs, path, "want an integer, got %s", n)
			return
		}
	}
	fail(errs, path, "want %s, got %s", k, typeName(v))
}

// The scalar schemas.
var (
	Str  Schema = kind("string")
	Int  Schema = kind("integer")
	Num  Schema = kind("number")
	Bool Schema = kind("boolean")
	Any  Schema = kind("any")
)

type enum []string

func (e enum) check(path string, v any, errs *[]string) {
	s, ok := v.(string)
	if !ok || !slices.Contains(e, s) {
		fail(errs, path, "want one of %q, got %v", []string(e), v)
	}
}

// Enum is a string from a closed set.
func Enum(values ...string) Schema { return enum(values) }

type nullable struct{ s Schema }

func (n nullable) check(path string, v any, errs *[]string) {
	if v != nil {
		n.s.check(path, v, errs)
	}
}

// Null allows null besides s.
func Null(s Schema) Schema { return nullable{s} }

type array struct{ item Schema }

func (a array) check(path string, v any, errs *[]string) {
	l, ok := v.([]any)
	if !ok {
		fail(errs, path, "want array, got %s", typeName(v))
		return
	}
	for i, it := range l {
		a.item.check(fmt.Sprintf("%s[%d]", path, i), it, errs)
	}
}

// Arr is an array of s.
func Arr(s Schema) Schema { return array{s} }

type record struct{ value Schema }

func (r record) check(path string, v any, errs *[]string) {
	m, ok := v.(map[string]any)
	if !ok {
		fail(errs, path, "want object, got %s", typeName(v))
		return
	}
	for k, e := range m {
		r.value.check(join(path, k), e, errs)
	}
}

// Map is an object with any keys whose values are s.
func Map(s Schema) Schema { return record{s} }

type oneOf []Schema

func (o oneOf) check(path string, v any, errs *[]string) {
	var all []string
	for _, s := range o {
		var e []string
		s.check(path, v, &e)
		if len(e) == 0 {
			return
		}
		all = append(all, strings.Join(e, "; "))
	}
	fail(errs, path, "matches none of %d shapes: %s", len(o), strings.Join(all, " | "))
}

// OneOf accepts a value any of the schemas accepts.
func OneOf(s ...Schema) Schema { return oneOf(s) }

// Field is one key of an object.
type Field struct {
	Name     string
	Schema   Schema
	Required bool
}

// Req is a required key; Opt an optional one.
func Req(name string, s Schema) Field { return Field{name, s, true} }
func Opt(name string, s Schema) Field { return Field{name, s, false} }

type object []Field

func (o object) check(path string, v any, errs *[]string) {
	m, ok := v.(map[string]any)
	if !ok {
		fail(errs, path, "want object, got %s", typeName(v))
		return
	}
	known := map[string]bool{}
	for _, f := range o {
		known[f.Name] = true
		val, present := m[f.Name]
		if !present {
			if f.Required {
				fail(errs, join(path, f.Name), "required key missing")
			}
			continue
		}
		f.Schema.check(join(path, f.Name), val, errs)
	}
	var unknown []string
	for k := range m {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		fail(errs, join(path, k), "unknown key")
	}
}

// Obj is an object with exactly these keys (unknown keys are errors).
func Obj(fields ...Field) Schema { return object(fields) }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// With returns o with more fields (for a shape that extends another).
func With(o Schema, fields ...Field) Schema {
	return append(append(object(nil), o.(object)...), fields...)
}

// Without returns o without the named fields.
func Without(o Schema, names ...string) Schema {
	var out object
	for _, f := range o.(object) {
		if !slices.Contains(names, f.Name) {
			out = append(out, f)
		}
	}
	return out
}
