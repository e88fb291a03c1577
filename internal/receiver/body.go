package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Reasons a body is rejected; they are the `reason` label of the rejected metric, the quarantine
// table's reason column and the error code in the 400 response.
const (
	reasonInvalidJSON = "invalid_json"
	reasonInvalidUTF8 = "invalid_utf8"
	reasonTooDeep     = "too_deep"
	reasonNotSinkBody = "not_sink_body"
)

// maxNestingDepth bounds how deeply a body's objects and arrays nest. Stored bodies are read back
// inside NDJSON lines (one level deeper) by tools with their own limits: jq 1.6 stops at 256
// levels, Python's json near 1000 (its recursion limit); 9,000-deep bodies broke both.
const maxNestingDepth = 128

// maxIDLen bounds identifiers that become indexed columns; real ones are UUIDs, nanoids and slugs.
const maxIDLen = 256

// sinkMeta holds the fields of an Intuned sink body (intuned-api.md §7) that become columns.
type sinkMeta struct {
	RunID, JobID, JobRunID, Project, APIName, ResultStatus string
}

// bodyError says why a body is not a sink body. Its message is safe to return to the sender.
type bodyError struct {
	reason string
	msg    string
}

func (e *bodyError) Error() string { return e.msg }

// sinkBody mirrors the sink body. Objects are pointers to tell "absent" from "present"; strings are
// values because absent, null and "" all mean missing. Fields we do not index (parameters, result
// payload, authSession...) are not decoded: the raw body is stored as is.
type sinkBody struct {
	WorkspaceID   string      `json:"workspaceId"`
	Project       *nameObject `json:"project"`
	ProjectJob    *idObject   `json:"projectJob"`
	ProjectJobRun *idObject   `json:"projectJobRun"`
	APIInfo       *apiInfo    `json:"apiInfo"`
}

type apiInfo struct {
	Name   string        `json:"name"`
	RunID  string        `json:"runId"`
	Result *statusObject `json:"result"`
}

// The nested objects of which we read one string field.
type (
	idObject struct {
		ID string `json:"id"`
	}
	nameObject struct {
		Name string `json:"name"`
	}
	statusObject struct {
		Status string `json:"status"`
	}
)

// parseSinkBody checks that body is one JSON object shaped like a sink body and extracts its columns.
// Every reader of /v1/deliveries must see the body as the receiver did: so it must be valid
// UTF-8 (invalid bytes decode to U+FFFD, which made distinct runIds one, and broke NDJSON
// readers), nest at most maxNestingDepth levels, and name each of our fields exactly once,
// matched case-sensitively as Python and JavaScript do (encoding/json matched "RUNID" too and
// took the last of several).
func parseSinkBody(body []byte) (sinkMeta, error) { return parseBody(body, true) }

// parseBody is parseSinkBody; with needWorkspace false it accepts a body without workspaceId (a
// backfilled line's, when the manager did not name the workspace).
func parseBody(body []byte, needWorkspace bool) (sinkMeta, error) {
	if !utf8.Valid(body) {
		return sinkMeta{}, &bodyError{reasonInvalidUTF8, "body is not valid UTF-8"}
	}
	var b sinkBody
	if !decodeSinkBodyFast(body, &b) {
		b = sinkBody{}
		if err := decodeSinkBody(body, &b); err != nil {
			return sinkMeta{}, err
		}
	}
	var missing []string
	need := func(name string, v string) string {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
			return ""
		}
		return v
	}
	m := sinkMeta{}
	if needWorkspace {
		need("workspaceId", b.WorkspaceID)
	}
	if b.Project == nil {
		missing = append(missing, "project.name")
	} else {
		m.Project = need("project.name", b.Project.Name)
	}
	if b.APIInfo == nil {
		missing = append(missing, "apiInfo.name", "apiInfo.runId", "apiInfo.result.status")
	} else {
		m.APIName = need("apiInfo.name", b.APIInfo.Name)
		m.RunID = need("apiInfo.runId", b.APIInfo.RunID)
		if b.APIInfo.Result == nil {
			missing = append(missing, "apiInfo.result.status")
		} else {
			m.ResultStatus = need("apiInfo.result.status", b.APIInfo.Result.Status)
		}
	}
	// projectJob/projectJobRun are absent for Run-API deliveries, but when present carry an id.
	if b.ProjectJob != nil {
		m.JobID = need("projectJob.id", b.ProjectJob.ID)
	}
	if b.ProjectJobRun != nil {
		m.JobRunID = need("projectJobRun.id", b.ProjectJobRun.ID)
	}
	// A body that is no sink body still counts for its JobRun's summary when its JobRun id is
	// usable: the returned meta then holds that id alone.
	rejected := sinkMeta{}
	if b.ProjectJobRun != nil && validID(b.ProjectJobRun.ID) {
		rejected.JobRunID = b.ProjectJobRun.ID
	}
	if len(missing) > 0 {
		return rejected, &bodyError{reasonNotSinkBody, "not an Intuned sink body: missing or empty " + strings.Join(missing, ", ")}
	}
	if m.ResultStatus != "completed" && m.ResultStatus != "failed" {
		return rejected, &bodyError{reasonNotSinkBody, fmt.Sprintf("apiInfo.result.status must be \"completed\" or \"failed\", got %q", m.ResultStatus)}
	}
	for _, f := range []struct{ name, v string }{
		{"apiInfo.runId", m.RunID}, {"projectJob.id", m.JobID}, {"projectJobRun.id", m.JobRunID},
		{"project.name", m.Project}, {"apiInfo.name", m.APIName},
	} {
		if p := idProblem(f.v); p != "" {
			return rejected, &bodyError{reasonNotSinkBody, f.name + p}
		}
	}
	return m, nil
}

// validID reports whether v can be one of a sink body's ids: not blank, and no idProblem.
func validID(v string) bool { return strings.TrimSpace(v) != "" && idProblem(v) == "" }

// idProblem says what makes v unusable as an indexed id column ("" when nothing does), as the end
// of a message that starts with the field's name.
func idProblem(v string) string {
	if len(v) > maxIDLen {
		return fmt.Sprintf(" is longer than %d bytes", maxIDLen)
	}
	// Control characters (NUL above all: PostgreSQL text cannot hold it) never occur in real ids.
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return " contains control characters"
	}
	// U+FFFD is what a lone surrogate escape (\ud800) decodes to: distinct ids would be one.
	if strings.ContainsRune(v, utf8.RuneError) {
		return " contains U+FFFD (a replacement for an invalid character)"
	}
	return ""
}

// decodeSinkBody is the reference decoder (the fast one defers to it for anything unusual): any
// valid JSON at most maxNestingDepth deep, our fields matched exactly after unescaping, each at
// most once per object, null meaning absent. Its errors are safe to return to the sender.
func decodeSinkBody(body []byte, b *sinkBody) error {
	if jsonDepth(body) > maxNestingDepth {
		return &bodyError{reasonTooDeep, fmt.Sprintf("body nests deeper than %d levels", maxNestingDepth)}
	}
	// Check the syntax first, so invalid JSON is always invalid_json whatever its shape.
	var obj struct{}
	if err := json.Unmarshal(body, &obj); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &bodyError{reasonNotSinkBody, "body must be a JSON object (an Intuned sink body)"}
		}
		return &bodyError{reasonInvalidJSON, "body is not valid JSON: " + err.Error()}
	}
	d := tokenWalker{json.NewDecoder(bytes.NewReader(body))}
	d.dec.UseNumber() // numbers are skipped; none may fail to convert
	d.dec.Token()     //nolint:errcheck // the opening brace; the body is valid
	str := func(dst *string) func(string) error {
		return func(path string) error { return d.str(path, dst) }
	}
	return d.fields("", map[string]func(string) error{
		"workspaceId": str(&b.WorkspaceID),
		"project": func(path string) error {
			return d.object(path, func() { b.Project = new(nameObject) }, func() map[string]func(string) error {
				return map[string]func(string) error{"name": str(&b.Project.Name)}
			})
		},
		"projectJob": func(path string) error {
			return d.object(path, func() { b.ProjectJob = new(idObject) }, func() map[string]func(string) error {
				return map[string]func(string) error{"id": str(&b.ProjectJob.ID)}
			})
		},
		"projectJobRun": func(path string) error {
			return d.object(path, func() { b.ProjectJobRun = new(idObject) }, func() map[string]func(string) error {
				return map[string]func(string) error{"id": str(&b.ProjectJobRun.ID)}
			})
		},
		"apiInfo": func(path string) error {
			return d.object(path, func() { b.APIInfo = new(apiInfo) }, func() map[string]func(string) error {
				a := b.APIInfo
				return map[string]func(string) error{
					"name":  str(&a.Name),
					"runId": str(&a.RunID),
					"result": func(path string) error {
						return d.object(path, func() { a.Result = new(statusObject) }, func() map[string]func(string) error {
							return map[string]func(string) error{"status": str(&a.Result.Status)}
						})
					},
				}
			})
		},
	})
}

// tokenWalker walks a body already known to be valid JSON.
type tokenWalker struct{ dec *json.Decoder }

// fields reads the members of an object whose opening brace was read, up to its closing one:
// ours (by exact name) go to their handler, at most once each; the rest are skipped.
func (d tokenWalker) fields(prefix string, ours map[string]func(path string) error) error {
	var seen []string
	for {
		tok, err := d.dec.Token()
		if err != nil {
			return &bodyError{reasonInvalidJSON, "body is not valid JSON: " + err.Error()}
		}
		key, ok := tok.(string)
		if !ok { // the closing brace
			return nil
		}
		handle, isOurs := ours[key]
		if !isOurs {
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		if slices.Contains(seen, key) {
			return &bodyError{reasonNotSinkBody, fmt.Sprintf("field %s%s is given more than once", prefix, key)}
		}
		seen = append(seen, key)
		if err := handle(prefix + key); err != nil {
			return err
		}
	}
}

// object reads one of our object fields: null leaves it absent; an object is created (create)
// and its members read with the handlers ours returns.
func (d tokenWalker) object(path string, create func(), ours func() map[string]func(string) error) error {
	tok, err := d.dec.Token()
	if err != nil {
		return &bodyError{reasonInvalidJSON, "body is not valid JSON: " + err.Error()}
	}
	switch tok {
	case nil:
		return nil
	case json.Delim('{'):
		create()
		return d.fields(path+".", ours())
	}
	return wrongType(path, tok)
}

// str reads one of our string fields; null means empty.
func (d tokenWalker) str(path string, dst *string) error {
	tok, err := d.dec.Token()
	if err != nil {
		return &bodyError{reasonInvalidJSON, "body is not valid JSON: " + err.Error()}
	}
	switch v := tok.(type) {
	case nil:
		*dst = ""
		return nil
	case string:
		*dst = v
		return nil
	}
	return wrongType(path, tok)
}

// skip reads past one value.
func (d tokenWalker) skip() error {
	depth := 0
	for {
		tok, err := d.dec.Token()
		if err != nil {
			return &bodyError{reasonInvalidJSON, "body is not valid JSON: " + err.Error()}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

func wrongType(path string, tok json.Token) error {
	kind := "string"
	switch tok.(type) {
	case json.Delim:
		kind = "array"
		if tok == json.Delim('{') {
			kind = "object"
		}
	case json.Number:
		kind = "number"
	case bool:
		kind = "bool"
	}
	return &bodyError{reasonNotSinkBody, fmt.Sprintf("field %s has the wrong type (%s)", path, kind)}
}

// jsonStrings follows JSON text byte by byte and tells which bytes stand outside its string
// literals, where brackets and whitespace are structure.
type jsonStrings struct{ in, escaped bool }

// outside reports whether c, the next byte, is outside every string (the quotes that open and
// close a string count as inside it).
func (s *jsonStrings) outside(c byte) bool {
	switch {
	case s.in:
		switch {
		case s.escaped:
			s.escaped = false
		case c == '\\':
			s.escaped = true
		case c == '"':
			s.in = false
		}
		return false
	case c == '"':
		s.in = true
		return false
	}
	return true
}

// jsonDepth returns how deeply the objects and arrays of body nest (brackets inside strings do
// not count). It does not check the syntax.
func jsonDepth(body []byte) int {
	var str jsonStrings
	depth, deepest := 0, 0
	for _, c := range body {
		if !str.outside(c) {
			continue
		}
		switch c {
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}
